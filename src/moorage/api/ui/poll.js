// Repeating work that stops cleanly: one run at a time (the next is scheduled after
// the previous finished), and every fetch it made is aborted when the view goes.

export class Poller {
  constructor() {
    this.controller = new AbortController();
    this.timers = new Set();
  }

  get signal() {
    return this.controller.signal;
  }

  get stopped() {
    return this.controller.signal.aborted;
  }

  /** Runs `work` now and then every `ms` milliseconds after each run ends. */
  every(ms, work) {
    const run = async () => {
      if (this.stopped) return;
      try {
        await work(this.signal);
      } catch {
        // A failed run says so in its view; the next one tries again.
      } finally {
        if (!this.stopped) {
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            run();
          }, ms);
          this.timers.add(timer);
        }
      }
    };
    run();
  }

  stop() {
    this.controller.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}
