// Adapts a Node worker_threads Worker or MessagePort (on/off 'message' with the data itself)
// to the Web-style endpoint comlink speaks (addEventListener with MessageEvent-like objects).
// No Node import: it only calls methods of the object it is given.
import type { Endpoint } from 'comlink';

interface NodePort {
  postMessage(message: any, transfer?: readonly any[]): void;
  on(event: 'message', listener: (data: any) => void): unknown;
  off(event: 'message', listener: (data: any) => void): unknown;
  start?: () => void;
}

export function nodeEndpoint(port: NodePort): Endpoint {
  const listeners = new WeakMap<object, (data: any) => void>();
  return {
    postMessage: (message: any, transfer?: Transferable[]) => port.postMessage(message, transfer),
    addEventListener: (_type: string, handler: any) => {
      const listener = (data: any) => {
        if (typeof handler === 'function') handler({ data } as MessageEvent);
        else handler.handleEvent({ data } as MessageEvent);
      };
      port.on('message', listener);
      listeners.set(handler, listener);
    },
    removeEventListener: (_type: string, handler: any) => {
      const listener = listeners.get(handler);
      if (!listener) return;
      port.off('message', listener);
      listeners.delete(handler);
    },
    start: port.start?.bind(port),
  };
}
