/** A bounded map that forgets the least recently written entries (caches, recent-message memory). */
export class BoundedCache<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}

  get(k: string): V | undefined {
    return this.map.get(k);
  }

  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }

  delete(k: string): void {
    this.map.delete(k);
  }
}
