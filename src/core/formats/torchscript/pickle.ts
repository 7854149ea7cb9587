// A safe unpickler for the subset of the Python pickle protocol (0–4, mostly 2) that PyTorch
// writes: TorchScript's `data.pkl` / `constants.pkl` and `torch.save` checkpoints.
// Nothing is ever executed: GLOBAL names resolve through `findGlobal` (a JS function) or stay
// opaque `PickleGlobal`s, whose REDUCE/NEWOBJ results are inert `PickleObject`s.

/** A `module.name` reference that was not resolved to a JS function. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of an unresolved class: its constructor args, BUILD state and any list/dict items. */
export class PickleObject {
  state: unknown = undefined;
  listItems: unknown[] | undefined;
  dictItems: Map<unknown, unknown> | undefined;
  constructor(
    readonly cls: PickleGlobal,
    readonly args: readonly unknown[],
  ) {}
}

export type PickleCallable = (...args: unknown[]) => unknown;

export interface UnpickleOptions {
  /** Resolves a GLOBAL to a JS function called by REDUCE/NEWOBJ; undefined keeps it opaque. */
  findGlobal?: (module: string, name: string) => PickleCallable | undefined;
  /** Resolves a persistent id (PERSID/BINPERSID); required if the stream contains any. */
  persistentLoad?: (pid: unknown) => unknown;
}

export class PickleError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} (at byte ${offset})`);
    this.name = 'PickleError';
  }
}

/** Resolvers for globals every PyTorch pickle may use; callers add torch-specific ones. */
export function builtinGlobal(module: string, name: string): PickleCallable | undefined {
  const q = `${module}.${name}`;
  switch (q) {
    case 'collections.OrderedDict':
    case 'builtins.dict':
    case '__builtin__.dict':
      return (items?: unknown) => {
        const m = new Map<unknown, unknown>();
        if (Array.isArray(items)) for (const kv of items) if (Array.isArray(kv)) m.set(kv[0], kv[1]);
        return m;
      };
    case 'builtins.list':
    case '__builtin__.list':
      return (items?: unknown) => (Array.isArray(items) ? [...items] : []);
    case 'builtins.set':
    case 'builtins.frozenset':
      return (items?: unknown) => new Set(Array.isArray(items) ? items : []);
    default:
      return undefined;
  }
}

/** Parses one pickle; returns the top-level value. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions = {}): unknown {
  return new Unpickler(bytes, options).load();
}

class Unpickler {
  private pos = 0;
  private stack: unknown[] = [];
  private readonly metastack: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly view: DataView;
  private readonly text = new TextDecoder('utf-8', { fatal: false });

  constructor(
    private readonly bytes: Uint8Array,
    private readonly options: UnpickleOptions,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private fail(message: string, at = this.pos): never {
    throw new PickleError(message, at);
  }

  private need(n: number): number {
    const p = this.pos;
    if (p + n > this.bytes.length) this.fail(`truncated pickle: wanted ${n} bytes`);
    this.pos += n;
    return p;
  }
  private u8(): number {
    return this.bytes[this.need(1)]!;
  }
  private u16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  private u32(): number {
    return this.view.getUint32(this.need(4), true);
  }
  private i32(): number {
    return this.view.getInt32(this.need(4), true);
  }
  private u64(): number {
    const v = this.view.getBigUint64(this.need(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('length too large');
    return Number(v);
  }
  private raw(n: number): Uint8Array {
    const p = this.need(n);
    return this.bytes.subarray(p, p + n);
  }
  private str(n: number): string {
    return this.text.decode(this.raw(n));
  }
  private line(): string {
    const start = this.pos;
    const end = this.bytes.indexOf(0x0a, start);
    if (end < 0) this.fail('truncated pickle: unterminated line');
    this.pos = end + 1;
    return new TextDecoder('latin1').decode(this.bytes.subarray(start, end));
  }

  /** Pushes after evaluating `v` (which may pop a MARK and so replace `this.stack`). */
  private push(v: unknown): void {
    this.stack.push(v);
  }
  private pop(): unknown {
    if (this.stack.length === 0) this.fail('stack underflow');
    return this.stack.pop();
  }
  private top(): unknown {
    if (this.stack.length === 0) this.fail('stack underflow');
    return this.stack[this.stack.length - 1];
  }
  private popMark(): unknown[] {
    const items = this.stack;
    const prev = this.metastack.pop();
    if (!prev) this.fail('MARK expected');
    this.stack = prev;
    return items;
  }

  private global(module: string, name: string): unknown {
    return this.options.findGlobal?.(module, name) ?? builtinGlobal(module, name) ?? new PickleGlobal(module, name);
  }

  private call(callable: unknown, args: unknown, at: number): unknown {
    const list = Array.isArray(args) ? args : this.fail('REDUCE/NEWOBJ arguments are not a tuple', at);
    if (typeof callable === 'function') return (callable as PickleCallable)(...list);
    if (callable instanceof PickleGlobal) return new PickleObject(callable, list);
    return this.fail('REDUCE/NEWOBJ on a value that is not a class or function', at);
  }

  private setItems(target: unknown, kv: unknown[], at: number): void {
    if (kv.length % 2) this.fail('odd number of items for SETITEMS', at);
    let map: Map<unknown, unknown>;
    if (target instanceof Map) map = target;
    else if (target instanceof PickleObject) map = target.dictItems ??= new Map();
    else return this.fail('SETITEM(S) on a value that is not a dict', at);
    for (let i = 0; i < kv.length; i += 2) map.set(kv[i], kv[i + 1]);
  }

  private appendItems(target: unknown, items: unknown[], at: number): void {
    if (Array.isArray(target)) target.push(...items);
    else if (target instanceof PickleObject) (target.listItems ??= []).push(...items);
    else if (target instanceof Set) for (const it of items) target.add(it);
    else this.fail('APPEND(S) on a value that is not a list', at);
  }

  private build(obj: unknown, state: unknown, at: number): void {
    if (obj instanceof PickleObject) {
      obj.state = state;
    } else if (obj instanceof Map && state instanceof Map) {
      for (const [k, v] of state) obj.set(k, v);
    } else if (obj && typeof obj === 'object' && 'setState' in obj && typeof obj.setState === 'function') {
      (obj.setState as (s: unknown) => void)(state);
    } else {
      this.fail('BUILD on a value without state', at);
    }
  }

  private persistent(pid: unknown): unknown {
    if (!this.options.persistentLoad) this.fail('persistent id found but no persistentLoad given');
    return this.options.persistentLoad(pid);
  }

  private decodeLong(b: Uint8Array): number | bigint {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private textInt(s: string): number | bigint | boolean {
    if (s === '00') return false;
    if (s === '01') return true;
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) this.fail(`bad integer literal ${JSON.stringify(s)}`);
    const v = BigInt(t);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  load(): unknown {
    const b = this.bytes;
    for (;;) {
      const at = this.pos;
      if (at >= b.length) this.fail('truncated pickle: no STOP opcode');
      const op = b[this.pos++]!;
      switch (op) {
        case 0x80: // PROTO
          if (this.u8() > 5) this.fail('unsupported pickle protocol', at);
          break;
        case 0x95: // FRAME
          this.u64();
          break;
        case 0x2e: // STOP '.'
          return this.pop();
        case 0x28: // MARK '('
          this.metastack.push(this.stack);
          this.stack = [];
          break;
        case 0x30: // POP '0'
          if (this.stack.length) this.stack.pop();
          else this.popMark();
          break;
        case 0x31: // POP_MARK '1'
          this.popMark();
          break;
        case 0x32: // DUP '2'
          this.stack.push(this.top());
          break;
        case 0x4e: // NONE 'N'
          this.stack.push(null);
          break;
        case 0x88: // NEWTRUE
          this.stack.push(true);
          break;
        case 0x89: // NEWFALSE
          this.stack.push(false);
          break;
        case 0x4b: // BININT1 'K'
          this.stack.push(this.u8());
          break;
        case 0x4d: // BININT2 'M'
          this.stack.push(this.u16());
          break;
        case 0x4a: // BININT 'J'
          this.stack.push(this.i32());
          break;
        case 0x49: // INT 'I'
          this.stack.push(this.textInt(this.line()));
          break;
        case 0x4c: // LONG 'L'
          this.stack.push(this.textInt(this.line()));
          break;
        case 0x8a: // LONG1
          this.stack.push(this.decodeLong(this.raw(this.u8())));
          break;
        case 0x8b: // LONG4
          this.stack.push(this.decodeLong(this.raw(this.i32())));
          break;
        case 0x47: // BINFLOAT 'G' (big-endian)
          this.stack.push(this.view.getFloat64(this.need(8), false));
          break;
        case 0x46: // FLOAT 'F'
          this.stack.push(Number.parseFloat(this.line()));
          break;
        case 0x58: // BINUNICODE 'X'
          this.stack.push(this.str(this.u32()));
          break;
        case 0x8c: // SHORT_BINUNICODE
          this.stack.push(this.str(this.u8()));
          break;
        case 0x8d: // BINUNICODE8
          this.stack.push(this.str(this.u64()));
          break;
        case 0x56: // UNICODE 'V' (raw-unicode-escape)
          this.stack.push(this.line().replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))));
          break;
        case 0x54: // BINSTRING 'T'
          this.stack.push(this.str(this.i32()));
          break;
        case 0x55: // SHORT_BINSTRING 'U'
          this.stack.push(this.str(this.u8()));
          break;
        case 0x53: // STRING 'S' (a quoted Python repr)
          this.stack.push(unquote(this.line()));
          break;
        case 0x42: // BINBYTES 'B'
          this.stack.push(this.raw(this.u32()).slice());
          break;
        case 0x43: // SHORT_BINBYTES 'C'
          this.stack.push(this.raw(this.u8()).slice());
          break;
        case 0x8e: // BINBYTES8
          this.stack.push(this.raw(this.u64()).slice());
          break;
        case 0x5d: // EMPTY_LIST ']'
          this.stack.push([]);
          break;
        case 0x6c: // LIST 'l'
          this.push(this.popMark());
          break;
        case 0x61: {
          // APPEND 'a'
          const v = this.pop();
          this.appendItems(this.top(), [v], at);
          break;
        }
        case 0x65: {
          // APPENDS 'e'
          const items = this.popMark();
          this.appendItems(this.top(), items, at);
          break;
        }
        case 0x29: // EMPTY_TUPLE ')'
          this.stack.push(Object.freeze([]));
          break;
        case 0x74: // TUPLE 't'
          this.push(Object.freeze(this.popMark()));
          break;
        case 0x85: // TUPLE1
          this.stack.push(Object.freeze([this.pop()]));
          break;
        case 0x86: {
          // TUPLE2
          const b2 = this.pop();
          const a2 = this.pop();
          this.stack.push(Object.freeze([a2, b2]));
          break;
        }
        case 0x87: {
          // TUPLE3
          const c3 = this.pop();
          const b3 = this.pop();
          const a3 = this.pop();
          this.stack.push(Object.freeze([a3, b3, c3]));
          break;
        }
        case 0x7d: // EMPTY_DICT '}'
          this.stack.push(new Map());
          break;
        case 0x64: {
          // DICT 'd'
          const m = new Map();
          this.setItems(m, this.popMark(), at);
          this.stack.push(m);
          break;
        }
        case 0x73: {
          // SETITEM 's'
          const v = this.pop();
          const k = this.pop();
          this.setItems(this.top(), [k, v], at);
          break;
        }
        case 0x75: {
          // SETITEMS 'u'
          const kv = this.popMark();
          this.setItems(this.top(), kv, at);
          break;
        }
        case 0x8f: // EMPTY_SET
          this.stack.push(new Set());
          break;
        case 0x90: {
          // ADDITEMS
          const items = this.popMark();
          this.appendItems(this.top(), items, at);
          break;
        }
        case 0x91: // FROZENSET
          this.push(new Set(this.popMark()));
          break;
        case 0x63: {
          // GLOBAL 'c'
          const module = this.line();
          const name = this.line();
          this.stack.push(this.global(module, name));
          break;
        }
        case 0x93: {
          // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') this.fail('STACK_GLOBAL needs two strings', at);
          this.stack.push(this.global(module, name));
          break;
        }
        case 0x52: {
          // REDUCE 'R'
          const args = this.pop();
          const callable = this.pop();
          this.stack.push(this.call(callable, args, at));
          break;
        }
        case 0x81: {
          // NEWOBJ
          const args = this.pop();
          const cls = this.pop();
          this.stack.push(this.call(cls, args, at));
          break;
        }
        case 0x92: {
          // NEWOBJ_EX (kwargs ignored)
          this.pop();
          const args = this.pop();
          const cls = this.pop();
          this.stack.push(this.call(cls, args, at));
          break;
        }
        case 0x62: {
          // BUILD 'b'
          const state = this.pop();
          this.build(this.top(), state, at);
          break;
        }
        case 0x50: // PERSID 'P'
          this.stack.push(this.persistent(this.line()));
          break;
        case 0x51: // BINPERSID 'Q'
          this.stack.push(this.persistent(this.pop()));
          break;
        case 0x67: // GET 'g'
          this.stack.push(this.getMemo(Number.parseInt(this.line(), 10), at));
          break;
        case 0x68: // BINGET 'h'
          this.stack.push(this.getMemo(this.u8(), at));
          break;
        case 0x6a: // LONG_BINGET 'j'
          this.stack.push(this.getMemo(this.u32(), at));
          break;
        case 0x70: // PUT 'p'
          this.memo.set(Number.parseInt(this.line(), 10), this.top());
          break;
        case 0x71: // BINPUT 'q'
          this.memo.set(this.u8(), this.top());
          break;
        case 0x72: // LONG_BINPUT 'r'
          this.memo.set(this.u32(), this.top());
          break;
        case 0x94: // MEMOIZE
          this.memo.set(this.memo.size, this.top());
          break;
        default:
          this.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}`, at);
      }
    }
  }

  private getMemo(key: number, at: number): unknown {
    if (!this.memo.has(key)) this.fail(`memo key ${key} not found`, at);
    return this.memo.get(key);
  }
}

/** Decodes a protocol-0 quoted string literal such as 'abc' or "a\\x00b". */
function unquote(s: string): string {
  const q = s[0];
  if ((q !== "'" && q !== '"') || s[s.length - 1] !== q) return s;
  return s.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|[\\'"nrt0])/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    return ({ n: '\n', r: '\r', t: '\t', '0': '\0' } as Record<string, string>)[e] ?? e;
  });
}
