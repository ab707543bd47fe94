// One call at a time: a pool solves one layer at a time, and concurrent callers wait their turn.
export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();

  /** Runs `task` after every task queued before it has settled. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    try {
      await previous;
      return await task();
    } finally {
      release();
    }
  }
}
