// One ticking clock for countdowns (seconds since the epoch, like the core's timestamps).
class Clock {
  now = $state(Math.floor(Date.now() / 1000));
  constructor() {
    setInterval(() => (this.now = Math.floor(Date.now() / 1000)), 1000);
  }
}
export const clock = new Clock();

export const when = (unix: number | null) => (unix ? new Date(unix * 1000).toLocaleString() : "never");

/** "1 h 05 min", "4 min 09 s", "12 s". */
export function span(secs: number): string {
  const s = Math.max(0, Math.floor(secs));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m) return r ? `${m} min ${String(r).padStart(2, "0")} s` : `${m} min`;
  return `${r} s`;
}
