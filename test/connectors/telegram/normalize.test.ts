import { describe, expect, it } from 'vitest';
import { normalizeUpdate, type TgMessage, type TgUpdate } from '../../../src/connectors/telegram/normalize.js';

const bot = { id: 777000, username: 'omni_support_bot' };
const privateChat = { id: 42, type: 'private' as const, first_name: 'Ольга' };
const from = { id: 42, first_name: 'Ольга', last_name: 'Смирнова', username: 'olga_s', language_code: 'ru' };

function message(fields: Partial<TgMessage>): TgUpdate {
  return { update_id: 1, message: { message_id: 10, date: 1_700_000_000, chat: privateChat, from, ...fields } };
}

function event(u: TgUpdate, groups: 'mention' | 'all' | 'off' = 'mention') {
  const n = normalizeUpdate(u, 'bot1', bot, groups);
  if (n.kind !== 'event') throw new Error(`expected an event, got ${n.kind}: ${n.reason}`);
  return n;
}

describe('telegram update normalization', () => {
  it('maps sender identity, platform ids and replies', () => {
    const n = event(message({ text: 'Где мой заказ?', reply_to_message: { message_id: 7 } }));
    expect(n.event).toMatchObject({
      type: 'message.inbound',
      id: 'telegram:bot1:42:10',
      conversation: { id: '42', kind: 'private' },
      sender: { id: '42', displayName: 'Ольга Смирнова', handles: { username: '@olga_s' }, language: 'ru' },
      replyTo: '42:7',
      platform: { messageId: '42:10', sentAt: '2023-11-14T22:13:20.000Z' },
    });
  });

  it('lists photos (largest size), documents, voice, video and stickers as files to fetch, captions as text', () => {
    const photo = event(message({ caption: 'Скриншот', photo: [
      { file_id: 's', width: 90, height: 90, file_size: 900 },
      { file_id: 'l', width: 1280, height: 960, file_size: 90_000 },
    ] }));
    expect(photo.event).toMatchObject({ text: 'Скриншот' });
    expect(photo.files).toEqual([{ fileId: 'l', size: 90_000, name: 'photo-10.jpg', mimeType: 'image/jpeg', kind: 'image' }]);
    expect(event(message({ document: { file_id: 'd', file_name: 'счёт.pdf', mime_type: 'application/pdf' } })).files[0]).toMatchObject({ kind: 'document', name: 'счёт.pdf', mimeType: 'application/pdf' });
    expect(event(message({ voice: { file_id: 'v', mime_type: 'audio/ogg' } })).files[0]).toMatchObject({ kind: 'voice', name: 'voice-10.ogg' });
    expect(event(message({ video: { file_id: 'vi' } })).files[0]).toMatchObject({ kind: 'video', mimeType: 'video/mp4' });
    expect(event(message({ sticker: { file_id: 'st', emoji: '👍' } })).files[0]).toMatchObject({ kind: 'sticker', mimeType: 'image/webp' });
  });

  it('keeps contacts and locations as structured parts', () => {
    const n = event(message({ contact: { phone_number: '+79161234567', first_name: 'Иван', last_name: 'Петров', user_id: 99 } }));
    expect(n.event).toMatchObject({ parts: [{ type: 'contact', name: 'Иван Петров', phone: '+79161234567', userId: '99' }] });
    const venue = event(message({ venue: { location: { latitude: 55.75, longitude: 37.62 }, title: 'Офис' }, location: { latitude: 55.75, longitude: 37.62 } }));
    expect(venue.event).toMatchObject({ parts: [{ type: 'location', latitude: 55.75, longitude: 37.62, title: 'Офис' }] });
  });

  it('makes each forum topic its own conversation; the topic opener is not a reply', () => {
    const forum = { id: -1001, type: 'supergroup' as const, title: 'Поддержка', is_forum: true };
    const n = event(message({ chat: forum, message_thread_id: 5, is_topic_message: true, text: 'вопрос', reply_to_message: { message_id: 5, from: { id: bot.id } } }), 'all');
    expect(n.event).toMatchObject({ conversation: { id: '-1001', threadId: '5', kind: 'group', title: 'Поддержка' }, replyTo: undefined });
    // In mention mode, a topic the bot opened does not make every message in it "addressed to the bot".
    expect(normalizeUpdate(message({ chat: forum, message_thread_id: 5, is_topic_message: true, text: 'вопрос', reply_to_message: { message_id: 5, from: { id: bot.id } } }), 'bot1', bot, 'mention').kind).toBe('skip');
  });

  it('takes group messages by mention, reply to the bot or command, as configured', () => {
    const group = { id: -5, type: 'group' as const, title: 'Клиенты' };
    const plain = message({ chat: group, text: 'всем привет' });
    expect(normalizeUpdate(plain, 'bot1', bot, 'mention').kind).toBe('skip');
    expect(normalizeUpdate(plain, 'bot1', bot, 'all').kind).toBe('event');
    expect(normalizeUpdate(message({ chat: group, text: '@omni_support_bot помогите', entities: [{ type: 'mention', offset: 0, length: 17 }] }), 'bot1', bot, 'off').kind).toBe('skip');
    expect(normalizeUpdate(message({ chat: group, text: 'ответ', reply_to_message: { message_id: 3, from: { id: bot.id } } }), 'bot1', bot, 'mention').kind).toBe('event');
    expect(normalizeUpdate(message({ chat: group, text: '/help@omni_support_bot', entities: [{ type: 'bot_command', offset: 0, length: 22 }] }), 'bot1', bot, 'mention').kind).toBe('event');
    expect(normalizeUpdate(message({ chat: group, text: '/help@other_bot', entities: [{ type: 'bot_command', offset: 0, length: 15 }] }), 'bot1', bot, 'mention').kind).toBe('skip');
  });

  it('turns an edit into message.edited aimed at the original', () => {
    const n = normalizeUpdate({ update_id: 2, edited_message: { message_id: 10, date: 1, edit_date: 2, chat: privateChat, from, text: 'исправлено' } }, 'bot1', bot, 'mention');
    expect(n).toMatchObject({ kind: 'event', event: { type: 'message.edited', targetPlatformMessageId: '42:10', text: 'исправлено', id: 'telegram:bot1:edit:42:10:2' } });
  });

  it('skips service messages and our own, keeps unsupported content visible', () => {
    expect(normalizeUpdate(message({ new_chat_members: [] } as never), 'bot1', bot, 'all')).toMatchObject({ kind: 'skip', code: 'service_message', reason: 'service message' });
    expect(normalizeUpdate(message({ from: { id: bot.id, is_bot: true }, text: 'эхо' }), 'bot1', bot, 'all').kind).toBe('skip');
    expect(event(message({ poll: { question: 'Оцените' } })).event).toMatchObject({ text: '[unsupported Telegram content: poll]' });
    expect(normalizeUpdate({ update_id: 3, callback_query: {} } as never, 'bot1', bot, 'all')).toMatchObject({ kind: 'skip', code: 'unhandled_update_type', reason: 'update type not handled (callback_query)' });
  });

  it('reports malformed updates as invalid instead of guessing', () => {
    expect(normalizeUpdate({} as never, 'bot1', bot, 'all').kind).toBe('invalid');
    expect(normalizeUpdate({ update_id: 4, message: { message_id: 'x', chat: {} } } as never, 'bot1', bot, 'all').kind).toBe('invalid');
    expect(normalizeUpdate(message({ text: 42 as never }), 'bot1', bot, 'all').kind).toBe('invalid');
    // An id past 2^53 arrives rounded (another chat's id); 1.5 is no id at all.
    for (const [fields, field] of [[{ chat: { ...privateChat, id: 9223372036854775807 } }, 'chat.id'], [{ chat: { ...privateChat, id: 1.5 } }, 'chat.id'], [{ message_id: 2 ** 53 + 2 }, 'message_id'], [{ from: { ...from, id: -0.5 } }, 'from.id']] as const) {
      const n = normalizeUpdate(message({ text: 'x', ...(fields as Partial<TgMessage>) }), 'bot1', bot, 'all');
      expect(n.kind, field).toBe('invalid');
      expect((n as { reason: string }).reason).toMatch(new RegExp(`^${field.replace('.', '\\.')}: `));
    }
    // A time no date can hold threw in the normalizer ("Invalid time value", the field unnamed).
    for (const [update, field] of [
      [message({ text: 'x', date: 1e20 }), 'date'],
      [message({ text: 'x', date: -5 }), 'date'],
      [{ update_id: 5, edited_message: { message_id: 10, date: 1_700_000_000, edit_date: 'вчера' as never, chat: privateChat, from, text: 'x' } }, 'edit_date'],
    ] as const) {
      const n = normalizeUpdate(update, 'bot1', bot, 'all');
      expect(n, field).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(new RegExp(`^${field}: .* is not a time Telegram could have sent`)) });
    }
    expect(event(message({ text: 'x', chat: { ...privateChat, id: -1001234567890123 } }), 'all').event.conversation.id).toBe('-1001234567890123');
  });
});
