// Renderer entry: one query client, the pushes wired into it and into the chart buffer once,
// then the App. Bundled by esbuild into app.js + app.css (index.html loads both).
import 'uplot/dist/uPlot.min.css';
import './app.css';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.js';
import { chartBuffer } from './chartBuffer.js';
import { client } from './client.js';
import { wirePushes } from './pushes.js';

const queryClient = new QueryClient({
  defaultOptions: {
    // the core is local and answers or says why; a failure shows in the error line at once
    queries: { retry: false, refetchOnWindowFocus: false },
    mutations: { retry: false },
  },
});

wirePushes(client, queryClient, chartBuffer);

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root');
createRoot(root).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
