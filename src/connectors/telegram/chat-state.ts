/**
 * Our standing in each chat, from `my_chat_member` updates: a private chat whose user blocked
 * the bot (`kicked`), a group that removed it (`left`/`kicked`), a promotion to administrator.
 * Kept in the account's KV state, so the replica that sends (which need not be the one that
 * polls) refuses a reply to a blocked chat without calling Telegram, and a restart remembers.
 */
import type { AccountState, ConversationChange } from '../contract.js';
import type { ConversationState } from '../../core/schema.js';
import { isCasConflict } from '../../core/bus.js';
import type { TgChatMemberUpdated } from './normalize.js';

export interface ChatMark {
  state: ConversationState;
  role?: 'member' | 'admin';
  /** Telegram's date of the change (seconds): an older update never overrides a newer one. */
  date: number;
}

const key = (chatId: string) => `chat.${chatId}`;

export class ChatStates {
  constructor(private readonly state: AccountState) {}

  async get(chatId: string): Promise<ChatMark | null> {
    const stored = await this.state.get(key(chatId));
    if (!stored) return null;
    try {
      return JSON.parse(stored.value) as ChatMark;
    } catch {
      return null;
    }
  }

  /**
   * Records the change, announcing it first when the helpdesk should hear of it (not for a
   * redelivered update, an older one arriving late, or a user simply starting the bot). The
   * announcement goes before the write and carries a stable id, so a crash in between announces
   * again (deduplicated) instead of never. Compare-and-set: two replicas cannot lose a change.
   */
  async apply(u: TgChatMemberUpdated, updateId: number, announce: (change: ConversationChange) => Promise<void>): Promise<void> {
    const chatId = String(u.chat.id);
    const mark = markOf(u);
    for (;;) {
      const stored = await this.state.get(key(chatId));
      const before = stored ? (JSON.parse(stored.value) as ChatMark) : null;
      if (before && before.date > mark.date) return;
      if (before && before.state === mark.state && before.role === mark.role) return;
      // An unknown chat becoming active is the ordinary case (a user starting the bot): no news.
      const news = !!before || mark.state !== 'active' || mark.role === 'admin';
      if (news) await announce(changeOf(u, mark, updateId));
      try {
        await this.state.update(key(chatId), JSON.stringify(mark), stored?.revision ?? 0);
        return;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
        // Someone else wrote first: decide again against what they wrote.
      }
    }
  }
}

function changeOf(u: TgChatMemberUpdated, mark: ChatMark, updateId: number): ConversationChange {
  const chatId = String(u.chat.id);
  const isGroup = u.chat.type === 'group' || u.chat.type === 'supergroup';
  return {
    id: `conversation.state:${chatId}:${updateId}`,
    conversation: {
      id: chatId,
      kind: isGroup ? 'group' : u.chat.type === 'channel' ? 'channel' : 'private',
      title: u.chat.title ?? ([u.chat.first_name, u.chat.last_name].filter(Boolean).join(' ') || undefined),
    },
    state: mark.state,
    role: mark.role,
    detail: `${u.old_chat_member?.status ?? 'unknown'} → ${u.new_chat_member.status}${u.from ? ` by ${u.from.id}` : ''}`,
    at: new Date(u.date * 1000).toISOString(),
  };
}

export function markOf(u: TgChatMemberUpdated): ChatMark {
  const status = u.new_chat_member.status;
  const isPrivate = u.chat.type === 'private';
  // In a private chat `kicked` is the user blocking the bot; in a group, `left` or `kicked` is removal.
  const state: ConversationState = status === 'kicked' || status === 'left' ? (isPrivate ? 'blocked' : 'removed') : 'active';
  const role = status === 'administrator' || status === 'creator' ? 'admin' : 'member';
  return { state, role: isPrivate ? undefined : role, date: u.date };
}
