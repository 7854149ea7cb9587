// The widget's side of the postMessage protocol: hears only the parent window, only from the
// allowed origins, and answers only the origin that asked. Messages from anywhere else are
// dropped without a reply, and nothing is ever posted to an origin that is not allowed.
import type { GenerateMessage, HostMessage, ReadyMessage, RequestId, WidgetMessage } from '../embed/protocol.ts';

export type Reply = (message: WidgetMessage) => void;

/** A message of our protocol that is malformed: answered with InvalidRequest when it has an id. */
export interface MalformedMessage {
  malformed: string;
  id?: RequestId;
}

const isId = (v: unknown): v is RequestId => (typeof v === 'string' && v.length > 0 && v.length <= 200) || (typeof v === 'number' && Number.isFinite(v));
const NUMBER_FIELDS = ['size', 'cfg', 'repetitionPenalty', 'temperature', 'topK', 'topP', 'seed', 'count'] as const;
/** `keep.codes` as structured clone delivers it: an array, or an Int32Array (a result's `codes`). */
const isCodes = (v: unknown): v is readonly number[] | Int32Array => Array.isArray(v) || v instanceof Int32Array;

/** null: not ours (other scripts use postMessage too); else a valid message or what is wrong with it. */
export function readHostMessage(data: unknown): HostMessage | MalformedMessage | null {
  if (typeof data !== 'object' || data === null) return null;
  const m = data as Record<string, unknown>;
  if (typeof m.type !== 'string' || !m.type.startsWith('simplear:')) return null;
  const id = isId(m.id) ? m.id : undefined;
  const bad = (malformed: string): MalformedMessage => (id === undefined ? { malformed } : { malformed, id });
  if (id === undefined) return bad('id must be a non-empty string or a number');
  if (m.type === 'simplear:cancel') return { type: 'simplear:cancel', id };
  if (m.type !== 'simplear:generate') return bad(`unknown message type ${JSON.stringify(m.type)}`);
  if (typeof m.prompt !== 'string') return bad('prompt must be a string');
  if (m.negativePrompt !== undefined && typeof m.negativePrompt !== 'string') return bad('negativePrompt must be a string');
  const message: GenerateMessage = { type: 'simplear:generate', id, prompt: m.prompt };
  if (typeof m.negativePrompt === 'string') message.negativePrompt = m.negativePrompt;
  for (const field of NUMBER_FIELDS) {
    const value = m[field];
    if (value === undefined) continue;
    if (typeof value !== 'number') return bad(`${field} must be a number`);
    message[field] = value;
  }
  // Only the shape here (a wrong type is a malformed request); the values (rows in range, codes
  // that fit the size and the model) are the engine's resolveKeep's, answered as InvalidSettings.
  if (m.keep !== undefined) {
    const keep = m.keep as { codes?: unknown; rows?: unknown } | null;
    if (typeof keep !== 'object' || keep === null || !isCodes(keep.codes) || typeof keep.rows !== 'number') {
      return bad('keep must be {codes: an array (or Int32Array) of visual codes, rows: a number}');
    }
    message.keep = { codes: keep.codes, rows: keep.rows };
  }
  return message;
}

/** The parent window's origin where the browser tells it (ancestorOrigins, else the referrer). */
export function parentOrigin(): string | null {
  const ancestors = location.ancestorOrigins;
  if (ancestors && ancestors.length > 0) return ancestors[0]!;
  try {
    return document.referrer ? new URL(document.referrer).origin : null;
  } catch {
    return null;
  }
}

export interface HostChannel {
  /** Posts `ready` to the parent, if the parent's origin is allowed. */
  announce(message: ReadyMessage): void;
  close(): void;
}

export function openHostChannel(
  allowedOrigins: readonly string[],
  onMessage: (message: HostMessage | MalformedMessage, reply: Reply, origin: string) => void,
): HostChannel {
  const framed = window.parent !== window;
  const listener = (event: MessageEvent) => {
    if (!framed || event.source !== window.parent || !allowedOrigins.includes(event.origin)) return;
    const message = readHostMessage(event.data);
    if (message === null) return;
    const origin = event.origin;
    onMessage(message, (reply) => window.parent.postMessage(reply, origin), origin);
  };
  window.addEventListener('message', listener);
  return {
    announce(message) {
      if (!framed) return;
      const parent = parentOrigin();
      // Known parent: only if it is allowed. Unknown: each allowed origin (the browser delivers
      // to the one that matches and drops the rest).
      const targets = parent === null ? allowedOrigins : allowedOrigins.filter((o) => o === parent);
      for (const origin of targets) window.parent.postMessage(message, origin);
    },
    close: () => window.removeEventListener('message', listener),
  };
}
