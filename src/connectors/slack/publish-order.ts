/**
 * Publishing in the order Slack sent, per conversation. Socket Mode hands envelopes over one at a
 * time and in order, but each is then made ready on its own: thread state from KV, users.info,
 * file downloads. An event whose preparation was quicker (a reply whose sender was cached, an edit
 * without files) was published before the post it answers or changes: the ticket showed replies
 * above their thread's first post, and the router parked an edit whose original it had not seen.
 *
 * So every event takes its place in its conversation's line when it arrives (synchronously,
 * before anything is awaited), is prepared at once, concurrently with the others, and publishes
 * only once the event before it in that line has published, failed or been skipped. Events of
 * other conversations never wait for each other.
 */
export interface Turn {
  /** Resolves once every earlier event of the conversation has left the line. */
  ready: Promise<void>;
  /** Called once this event is published, skipped or given up on: the next one may go. */
  leave: () => void;
}

interface Line {
  /** Resolves once the last event that entered has left, and every one before it. Never rejects. */
  last: Promise<void>;
  inLine: number;
}

export class PublishOrder {
  /** Only conversations with events in line: the last to leave forgets its conversation. */
  private readonly lines = new Map<string, Line>();

  /** Takes the next place in `key`'s line. Call it in arrival order, before the first await. */
  enter(key: string): Turn {
    const line = this.lines.get(key) ?? { last: Promise.resolve(), inLine: 0 };
    const ready = line.last;
    let markLeft!: () => void;
    const left = new Promise<void>((resolve) => (markLeft = resolve));
    // Transitive: an event that leaves before the one ahead of it (its preparation failed) lets
    // the next one go only once that one has left too.
    line.last = ready.then(() => left);
    line.inLine++;
    this.lines.set(key, line);
    let gone = false;
    const leave = () => {
      if (gone) return;
      gone = true;
      markLeft();
      if (--line.inLine === 0 && this.lines.get(key) === line) this.lines.delete(key);
    };
    return { ready, leave };
  }

  /** Conversations with events in line. */
  get size(): number {
    return this.lines.size;
  }
}
