// A small, typed ONNX graph builder on top of the onnx-proto protobuf classes.
// Graph files (lm.ts, vq-decoder.ts) read like a forward pass because op plumbing lives here.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type ElemType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'bool';

export const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  uint8: onnx.TensorProto.DataType.UINT8,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** A dimension: a fixed size or a symbolic name (dynamic). */
export type Dim = number | string;

/** Float attributes must be tagged: 1.0 and 1 are indistinguishable in JS. */
export interface FloatAttr { float: number }
export interface FloatsAttr { floats: number[] }
export interface TensorAttr { tensor: TensorInit }
export type AttrValue = number | number[] | string | FloatAttr | FloatsAttr | TensorAttr;
export const float = (value: number): FloatAttr => ({ float: value });
export const floats = (values: number[]): FloatsAttr => ({ floats: values });

export interface TensorInit {
  type: ElemType;
  dims: number[];
  /** Little-endian raw bytes of the tensor. */
  raw: Uint8Array;
}

const MS_DOMAIN = 'com.microsoft';

/** One external data file: the name a model refers to and its bytes (onnxruntime-web's `externalData`). */
export interface ExternalDataFile {
  path: string;
  data: Uint8Array;
}

/** A serialised model whose large initializers live outside it (GraphBuilder.toModelWithExternalData). */
export interface ModelWithExternalData {
  model: Uint8Array;
  externalData: ExternalDataFile[];
}

function toTensorProto(name: string, t: TensorInit): InstanceType<typeof onnx.TensorProto> {
  return onnx.TensorProto.create({ name, dataType: ELEM[t.type], dims: t.dims, rawData: t.raw });
}

function toAttribute(name: string, v: AttrValue): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return onnx.AttributeProto.create({ name, type: T.INT, i: v });
  if (typeof v === 'string') {
    return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(v) });
  }
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: v });
  if ('float' in v) return onnx.AttributeProto.create({ name, type: T.FLOAT, f: v.float });
  if ('floats' in v) return onnx.AttributeProto.create({ name, type: T.FLOATS, floats: v.floats });
  return onnx.AttributeProto.create({ name, type: T.TENSOR, t: toTensorProto(name, v.tensor) });
}

function valueInfo(name: string, type: ElemType, dims: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEM[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly inits: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly usedNames = new Set<string>();
  private counter = 0;
  private usesMsDomain = false;

  constructor(readonly name: string) {}

  /** A fresh value name, unique in this graph. */
  fresh(hint: string): string {
    let n = `${hint}_${this.counter++}`;
    while (this.usedNames.has(n)) n = `${hint}_${this.counter++}`;
    this.usedNames.add(n);
    return n;
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.usedNames.add(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: ElemType, dims: Dim[]): string {
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Adds a constant weight and returns its name. */
  initializer(name: string, t: TensorInit): string {
    if (this.usedNames.has(name)) throw new Error(`duplicate initializer name ${name}`);
    this.usedNames.add(name);
    return this.addInit(name, t);
  }

  private addInit(name: string, t: TensorInit): string {
    this.inits.push(toTensorProto(name, t));
    return name;
  }

  /** Small constants (shapes, axes, scalars) as initializers. */
  constInt64(values: number[], dims: number[] = [values.length]): string {
    const raw = new Uint8Array(new BigInt64Array(values.map((v) => BigInt(v))).buffer);
    return this.addInit(this.fresh('c_i64'), { type: 'int64', dims, raw });
  }

  /** A constant tensor of any type under a fresh name (`hint_N`). */
  constTensor(hint: string, t: TensorInit): string {
    return this.addInit(this.fresh(hint), t);
  }

  constFloat32(values: number[], dims: number[] = [values.length]): string {
    return this.addInit(this.fresh('c_f32'), {
      type: 'float32',
      dims,
      raw: new Uint8Array(new Float32Array(values).buffer),
    });
  }

  /**
   * Appends a node. `outputs` is a count (fresh names are made) or explicit names;
   * an empty string in `inputs` marks an omitted optional input.
   */
  op(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    outputs: number | string[] = 1,
    domain = '',
  ): string[] {
    const outNames =
      typeof outputs === 'number'
        ? Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()))
        : outputs.map((o) => {
            this.usedNames.add(o);
            return o;
          });
    if (domain === MS_DOMAIN) this.usesMsDomain = true;
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        domain,
        name: this.fresh(`n_${opType}`),
        input: inputs,
        output: outNames,
        attribute: Object.entries(attrs).map(([k, v]) => toAttribute(k, v)),
      }),
    );
    return outNames;
  }

  /** Single-output shorthand. */
  op1(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.op(opType, inputs, attrs, 1, domain)[0]!;
  }

  /** com.microsoft contrib op. */
  ms(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs: number | string[] = 1): string[] {
    return this.op(opType, inputs, attrs, outputs, MS_DOMAIN);
  }

  /** Serialises the model (opset 21 + com.microsoft 1), every initializer inside it. */
  toBytes(): Uint8Array {
    return this.encode(this.inits);
  }

  /**
   * Serialises the model with every initializer of at least `minBytes` as external data: the
   * model refers to it by a file name (offset 0, its whole length) and `externalData` carries
   * the tensor's own bytes under that name (not copied), for onnxruntime-web's session option
   * `externalData`. A serialised ONNX model must stay under protobuf's 2 GB; the weights then
   * need not, and are never copied into one big buffer.
   */
  toModelWithExternalData(minBytes: number): ModelWithExternalData {
    const externalData: ExternalDataFile[] = [];
    const inits = this.inits.map((t) => {
      const raw = t.rawData;
      if (raw.byteLength < minBytes) return t;
      const path = `w${externalData.length}.bin`;
      externalData.push({ path, data: raw });
      return onnx.TensorProto.create({
        name: t.name,
        dataType: t.dataType,
        dims: t.dims,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: path },
          { key: 'offset', value: '0' },
          { key: 'length', value: String(raw.byteLength) },
        ],
      });
    });
    return { model: this.encode(inits), externalData };
  }

  private encode(initializer: InstanceType<typeof onnx.TensorProto>[]): Uint8Array {
    const opsetImport = [{ domain: '', version: 21 }];
    if (this.usesMsDomain) opsetImport.push({ domain: MS_DOMAIN, version: 1 });
    const model = onnx.ModelProto.create({
      irVersion: 10,
      producerName: 'simplear-web',
      opsetImport,
      graph: onnx.GraphProto.create({
        name: this.name,
        node: this.nodes,
        initializer,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
