/**
 * Raw 8-bit Cyrillic in a mail's header fields and file names, each field in its own charset (The
 * Bat!, old Outlook, 1C exports, scanners): every field is read from its own bytes, the body's
 * charset only breaking a tie. Through the connector's parser (normalizeMail) for the whole table
 * of charsets, and through the mailbox (Dovecot, the connector, the router) for the reported mixes.
 */
import { describe, expect, it } from 'vitest';
import { normalizeMail } from '../../../src/connectors/email/normalize.js';
import { normalizeDeps } from './normalize-deps.js';
import { SUPPORT, mailboxGateway } from './harness.js';
import { mixedCharsetMail, uniqueId, type RawText } from './mails.js';

const LEGACY = ['windows-1251', 'koi8-r', 'cp866', 'iso-8859-5', 'maccyrillic'] as const;
const SHORT_NAMES = ['Счёт.pdf', 'акт.xlsx', 'ТЗ.docx'];
const TEXT = 'Добрый день!\nВо вложении документы, прошу проверить и оплатить до пятницы.';

const deps = normalizeDeps;

async function read(mail: Buffer) {
  const n = await normalizeMail(mail, SUPPORT, deps);
  if (n.kind !== 'event') throw new Error(n.reason);
  const e = n.event;
  return { subject: e.email!.subject, from: e.sender.displayName, text: e.text, files: (e.attachments ?? []).map((a) => a.name) };
}

describe('raw 8-bit header fields and file names, each in its own charset', () => {
  it('reads a short file name in any Cyrillic charset over a body in any other, labelled or not', async () => {
    const wrong: string[] = [];
    for (const body of [...LEGACY, 'utf-8'] as const) {
      for (const bodyLabel of [undefined, body]) {
        for (const cs of LEGACY) {
          for (const name of SHORT_NAMES) {
            // «ТЗ» in ISO-8859-5 is C2 B7, valid UTF-8 («·»): valid UTF-8 stays UTF-8, so it cannot be told apart.
            if (cs === 'iso-8859-5' && name === 'ТЗ.docx') continue;
            // An unlabelled legacy subject makes the parser read the mail a second time (the relabelling path).
            for (const subject of [{ text: 'Документы', charset: body }, { text: 'Documents', charset: 'utf-8' }]) {
              const got = await read(mixedCharsetMail({ messageId: uniqueId('names'), subject, fromName: { text: 'Бухгалтерия', charset: body }, body: { text: TEXT, charset: body }, bodyLabel, file: { text: name, charset: cs } }));
              const want = { subject: subject.text, from: 'Бухгалтерия', text: TEXT, files: [name] };
              if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(`body ${body}${bodyLabel ? ' (labelled)' : ''}, subject ${subject.charset}, name ${cs}: ${JSON.stringify(got)}`);
            }
          }
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('reads a Subject and a From name each in its own charset, not the body’s', async () => {
    const wrong: string[] = [];
    for (const body of LEGACY) {
      for (const cs of LEGACY) {
        for (const [subject, fromName] of [['Счёт', 'Пётр'], ['Акт сверки', 'Ольга Смирнова'], ['ТЗ на доработку', 'ООО Ромашка']]) {
          const mail = mixedCharsetMail({ messageId: uniqueId('fields'), subject: { text: subject!, charset: cs }, fromName: { text: fromName!, charset: cs }, body: { text: TEXT, charset: body }, file: { text: 'scan.pdf', charset: 'utf-8' } });
          const got = await read(mail);
          if (got.subject !== subject || got.from !== fromName || got.text !== TEXT) wrong.push(`body ${body}, fields ${cs}: ${JSON.stringify(got)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('keeps UTF-8 fields as UTF-8 beside a legacy body, and Western names as they came', async () => {
    const got = await read(mixedCharsetMail({ messageId: uniqueId('utf8'), subject: { text: 'Счёт', charset: 'utf-8' }, fromName: { text: 'Пётр', charset: 'utf-8' }, body: { text: TEXT, charset: 'koi8-r' }, file: { text: 'акт.xlsx', charset: 'utf-8' } }));
    expect(got).toEqual({ subject: 'Счёт', from: 'Пётр', text: TEXT, files: ['акт.xlsx'] });
    const western = await read(mixedCharsetMail({ messageId: uniqueId('latin1'), subject: { text: 'Счёт', charset: 'windows-1251' }, fromName: { text: 'Пётр', charset: 'windows-1251' }, body: { text: TEXT, charset: 'windows-1251' }, file: { text: 'café.pdf', charset: 'latin1' } }));
    expect(western.files).toEqual(['café.pdf']);
  });
});

describe('mixed charsets through the mailbox', () => {
  const mailbox = mailboxGateway();
  const inbound = (messageId: string) => mailbox.inbound(messageId);

  it('gives the agent each field in its own charset: KOI8-R body + cp1251 name, cp1251 body + KOI8-R subject, UTF-8 body + cp866 name', async () => {
    const t = (text: string, charset: string): RawText => ({ text, charset });
    const cases = [
      { subject: t('Счёт', 'koi8-r'), fromName: t('Пётр Иванов', 'koi8-r'), body: t(TEXT, 'koi8-r'), file: t('Счёт.pdf', 'windows-1251') },
      { subject: t('Счёт', 'koi8-r'), fromName: t('Пётр Иванов', 'windows-1251'), body: t(TEXT, 'koi8-r'), bodyLabel: 'koi8-r', file: t('акт.xlsx', 'windows-1251') },
      { subject: t('Акт сверки за ноябрь', 'koi8-r'), fromName: t('Ольга Смирнова', 'windows-1251'), body: t(TEXT, 'windows-1251'), file: t('ТЗ.docx', 'windows-1251') },
      { subject: t('Скан договора', 'utf-8'), fromName: t('Сканер МФУ', 'cp866'), body: t(TEXT, 'utf-8'), bodyLabel: 'utf-8', file: t('ТЗ.docx', 'cp866') },
    ];
    const ids = cases.map(() => uniqueId('mixed'));
    for (const [i, c] of cases.entries()) await mailbox.world.imap.append('INBOX', mixedCharsetMail({ messageId: ids[i]!, ...c }));
    for (const [i, c] of cases.entries()) {
      const msg = await inbound(ids[i]!);
      expect([msg.email!.subject, msg.sender.displayName, msg.text, msg.attachments.map((a) => a.name)], JSON.stringify(c)).toEqual([c.subject.text, c.fromName.text, TEXT, [c.file.text]]);
    }
  });
});
