// The renderer's only door to the console: a bridge of two functions over one IPC channel,
// carrying the API's envelopes (protocol/console.ts). The renderer gets no ipcRenderer, no Node and
// no Electron object; it runs sandboxed with context isolation. Bundled into one file because
// a sandboxed preload cannot require anything but electron.
import { contextBridge, ipcRenderer } from 'electron';
import { IPC_CHANNEL } from '../../../protocol/rpc.js';


contextBridge.exposeInMainWorld('hitless', {
  send(msg: unknown): void {
    ipcRenderer.send(IPC_CHANNEL, msg);
  },
  onMessage(fn: (msg: unknown) => void): void {
    ipcRenderer.on(IPC_CHANNEL, (_e, msg: unknown) => fn(msg));
  },
});
