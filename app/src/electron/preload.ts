// The renderer's only door to the console: a bridge of two functions over one IPC channel,
// carrying the API's envelopes (common/api.ts). The renderer gets no ipcRenderer, no Node and
// no Electron object; it runs sandboxed with context isolation. Bundled into one file because
// a sandboxed preload cannot require anything but electron.
import { contextBridge, ipcRenderer } from 'electron';

const CHANNEL = 'hitless/api';

contextBridge.exposeInMainWorld('hitless', {
  send(msg: unknown): void {
    ipcRenderer.send(CHANNEL, msg);
  },
  onMessage(fn: (msg: unknown) => void): void {
    ipcRenderer.on(CHANNEL, (_e, msg: unknown) => fn(msg));
  },
});
