// Types of run-local.mjs (a plain .mjs example, so it runs without a build), for the tests.
import type { ChildProcess } from 'node:child_process';

export interface LocalWorkerInstance {
  index: number;
  child: ChildProcess;
  pid: number | undefined;
  url: string;
  port: number;
  readonly alive: boolean;
  kill(): void;
  output(): string;
}

export interface LocalWorkers {
  urls: string[];
  instances: LocalWorkerInstance[];
  kill(index: number): void;
  close(): Promise<void>;
}

export function buildWorker(root: string): Promise<string>;
export function startLocalWorkers(options?: {
  count?: number; root?: string; ports?: number[]; host?: string; compatibilityDate?: string; startTimeoutMs?: number; log?: (s: string) => void;
}): Promise<LocalWorkers>;
