// The safe unpickler (src/core/formats/torchscript/pickle.ts) on pickles written by CPython's
// own `pickle` module (hex below, protocols 0, 2 and 4), and on malformed input.
import { describe, expect, it } from 'vitest';
import { PickleError, PickleGlobal, PickleObject, unpickle } from '../../src/core/formats/torchscript/pickle.ts';

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

// obj = {'a': [1, -2, 300, 70000, -70000, 2**40, -(2**70), 1.5, None, True, False],
//        'b': ('x', 'ünï', b'\x00\x01'), 'c': {'nested': (1,), 2: (1, 2), 3: (1, 2, 3)}}
// obj['d'] = obj['a']          (shared through the memo)
const PY_PICKLES: Record<number, string> = {
  0:
    '286470300a56610a70310a286c70320a49310a61492d320a61493330300a614937303030300a61492d37303030300a614c313039393531313632373737364c0a614c2d313138303539313632303731373431313330333432344c0a6146312e350a614e614930310a614930300a617356620a70330a2856780a70340a56fc6eef0a70350a635f636f646563730a656e636f64650a70360a28565c7530303030010a70370a566c6174696e310a70380a7470390a527031300a747031310a7356630a7031320a28647031330a566e65737465640a7031340a2849310a747031350a7349320a2849310a49320a747031360a7349330a2849310a49320a49330a747031370a737356640a7031380a67320a732e',
  2: '80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101004a90eefeff8a060000000000018a090000000000000000c0473ff80000000000004e888965580100000062710358010000007871045805000000c3bc6ec3af7105635f636f646563730a656e636f64650a710658020000000001710758060000006c6174696e31710886710952710a87710b580100000063710c7d710d2858060000006e6573746564710e4b0185710f4b024b014b028671104b034b014b024b038771117558010000006471126802752e',
  4: '80049584000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101004a90eefeff8a060000000000018a090000000000000000c0473ff80000000000004e8889658c0162948c0178948c05c3bc6ec3af94430200019487948c0163947d94288c066e6573746564944b0185944b024b014b0286944b034b014b024b038794758c0164946802752e',
};

/** Python 2-compatible pickles write bytes as _codecs.encode(str, 'latin1'). */
const codecs = (module: string, name: string) =>
  module === '_codecs' && name === 'encode' ? (s: unknown) => Uint8Array.from(String(s), (c) => c.charCodeAt(0)) : undefined;

describe('unpickle', () => {
  for (const proto of [0, 2, 4]) {
    it(`reads CPython protocol ${proto}: ints of every width, floats, strings, bytes, containers, memo`, () => {
      const v = unpickle(hex(PY_PICKLES[proto]!), { findGlobal: codecs }) as Map<unknown, unknown>;
      expect(v).toBeInstanceOf(Map);
      expect([...v.keys()]).toEqual(['a', 'b', 'c', 'd']);
      expect(v.get('a')).toEqual([1, -2, 300, 70000, -70000, 2 ** 40, -(2n ** 70n), 1.5, null, true, false]);
      const b = v.get('b') as unknown[];
      expect(b[0]).toBe('x');
      expect(b[1]).toBe('ünï');
      expect(Array.from(b[2] as Uint8Array)).toEqual([0, 1]);
      expect(Object.isFrozen(b)).toBe(true); // tuples are frozen arrays
      const c = v.get('c') as Map<unknown, unknown>;
      expect(c.get('nested')).toEqual([1]);
      expect(c.get(2)).toEqual([1, 2]);
      expect(c.get(3)).toEqual([1, 2, 3]);
      expect(v.get('d')).toBe(v.get('a')); // the memo keeps identity
    });
  }

  it('keeps unknown classes inert: REDUCE/NEWOBJ give PickleObjects, BUILD stores their state', () => {
    // c__main__\nThing\n ) \x81 } (X\x01\x00\x00\x00kK\x07u b .
    const bytes = Uint8Array.from([
      0x80, 2, ...Buffer.from('c__main__\nThing\n'), 0x29, 0x81, 0x7d, 0x28, 0x58, 1, 0, 0, 0, 0x6b, 0x4b, 7, 0x75, 0x62, 0x2e,
    ]);
    const obj = unpickle(bytes) as PickleObject;
    expect(obj).toBeInstanceOf(PickleObject);
    expect(obj.cls).toBeInstanceOf(PickleGlobal);
    expect(obj.cls.qualifiedName).toBe('__main__.Thing');
    expect((obj.state as Map<string, number>).get('k')).toBe(7);
  });

  it('resolves persistent ids and collections.OrderedDict', () => {
    // {'t': <persistent ('storage', 'x', 'k0')>, 'od': OrderedDict([('z', 1), ('y', 2)])}
    const bytes = hex(
      '80027d7100285801000000747101580700000073746f726167657102580100000078710358020000006b3071048771055158020000006f64710663636f6c6c656374696f6e730a4f726465726564446963740a7107295271082858010000007a71094b01580100000079710a4b0275752e',
    );
    const pids: unknown[] = [];
    const v = unpickle(bytes, { persistentLoad: (pid) => (pids.push(pid), { loaded: pid }) }) as Map<string, unknown>;
    expect(pids).toEqual([['storage', 'x', 'k0']]);
    expect(v.get('t')).toEqual({ loaded: ['storage', 'x', 'k0'] });
    const od = v.get('od') as Map<string, number>;
    expect([...od.entries()]).toEqual([
      ['z', 1],
      ['y', 2],
    ]);
  });

  it('fails with the byte offset on unknown opcodes, truncation and a missing persistentLoad', () => {
    expect(() => unpickle(Uint8Array.of(0x80, 2, 0xff))).toThrow(/unsupported pickle opcode 0xff \(at byte 2\)/);
    expect(() => unpickle(hex(PY_PICKLES[2]!).subarray(0, 40))).toThrow(PickleError);
    expect(() => unpickle(Uint8Array.of(0x80, 2, 0x4e))).toThrow(/no STOP/);
    expect(() => unpickle(Uint8Array.of(0x80, 2, 0x4e, 0x51, 0x2e))).toThrow(/persistentLoad/);
    expect(() => unpickle(Uint8Array.of(0x80, 2, 0x68, 9, 0x2e))).toThrow(/memo key 9/);
    expect(() => unpickle(Uint8Array.of(0x2e))).toThrow(/stack underflow/);
  });
});
