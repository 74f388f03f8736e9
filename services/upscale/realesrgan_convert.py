"""Convert Real-ESRGAN animevideov3 (SRVGGNetCompact) from ncnn .param/.bin to ONNX.

The only real super-resolution weights reachable offline ship in ncnn format. Converting them once lets
the Upscale service run on plain onnxruntime (CPU or CUDA) without the ncnn runtime.

Rather than hard-coding the architecture, the converter walks the .param layer list, so the x2/x3 files
(the same x4 network followed by a bicubic downscale) convert through the same code. Only the layer types
these files use are supported; anything else is refused loudly instead of being guessed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ncnn prefixes quantised weight blobs with a 4-byte tag; this one means "fp16 follows".
_FP16_TAG = 0x01306B47
_FP32_TAG = 0x00000000
_OPSET = 17
_INPUT_NAME = "input"
_OUTPUT_NAME = "output"


@dataclass
class NcnnLayer:
    """One line of a .param file."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, str] = field(default_factory=dict)


def parse_param(param_path: str | Path) -> list[NcnnLayer]:
    """Read the text .param format: magic, counts, then one layer per line."""
    lines = [ln.split() for ln in Path(param_path).read_text().splitlines() if ln.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError(f"{param_path}: not an ncnn text .param file (bad magic)")
    layer_count = int(lines[1][0])
    layers = []
    for tokens in lines[2 : 2 + layer_count]:
        layer_type, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        blobs = tokens[4 : 4 + n_in + n_out]
        params = dict(_split_param(tok) for tok in tokens[4 + n_in + n_out :])
        layers.append(NcnnLayer(layer_type, name, blobs[:n_in], blobs[n_in:], params))
    return layers


def _split_param(token: str) -> tuple[int, str]:
    key, value = token.split("=", 1)
    return int(key), value


class _BinReader:
    """Sequential reader over the .bin: ncnn stores blobs back to back in layer order."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def raw_fp32(self, count: int) -> np.ndarray:
        # Biases and PReLU slopes are stored untagged as fp32.
        return self._take(count * 4, np.float32)

    def tagged(self, count: int) -> np.ndarray:
        # Convolution weights carry a tag saying how they are encoded.
        (tag,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        if tag == _FP16_TAG:
            values = self._take(count * 2, np.float16).astype(np.float32)
            self.pos += (-self.pos) % 4  # ncnn pads each blob to 4 bytes
            return values
        if tag == _FP32_TAG:
            return self._take(count * 4, np.float32)
        raise ValueError(f"unsupported ncnn weight tag 0x{tag:08X} at byte {self.pos - 4}")

    def _take(self, nbytes: int, dtype) -> np.ndarray:
        if self.pos + nbytes > len(self.data):
            raise ValueError("ncnn .bin is shorter than its .param describes")
        out = np.frombuffer(self.data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=self.pos)
        self.pos += nbytes
        return out.copy()

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"ncnn .bin has {len(self.data) - self.pos} unread bytes: .param does not match")


def convert_animevideov3(param_path: str | Path, bin_path: str | Path, onnx_path: str | Path) -> Path:
    """Write an ONNX model (NCHW float32 RGB in 0..1, dynamic N/H/W) equivalent to the ncnn model."""
    import onnx

    layers = parse_param(param_path)
    reader = _BinReader(Path(bin_path).read_bytes())
    builder = _GraphBuilder()
    for layer in layers:
        builder.add(layer, reader)
    reader.finish()
    model = builder.model()
    onnx.checker.check_model(model, full_check=True)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    onnx.save(model, tmp)
    tmp.replace(onnx_path)  # never leave a half-written model where the service would load it
    return onnx_path


class _GraphBuilder:
    """Translates ncnn layers into ONNX nodes, renaming ncnn blobs onto ONNX value names."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.alias: dict[str, str] = {}
        self.last = ""

    def name(self, blob: str) -> str:
        return self.alias.get(blob, blob)

    def add(self, layer: NcnnLayer, reader: _BinReader) -> None:
        handler = getattr(self, f"_{layer.type.lower()}", None)
        if handler is None:
            raise ValueError(f"ncnn layer type {layer.type!r} ({layer.name}) is not supported by this converter")
        handler(layer, reader)

    def _const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def _node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))

    def _input(self, layer, reader):
        self.alias[layer.outputs[0]] = _INPUT_NAME

    def _split(self, layer, reader):
        # ncnn needs explicit fan-out; ONNX values can be read many times.
        for out in layer.outputs:
            self.alias[out] = self.name(layer.inputs[0])

    def _convolution(self, layer, reader):
        p = layer.params
        out_ch, kernel = int(p[0]), int(p.get(1, 1))
        stride, pad = int(p.get(3, 1)), int(p.get(4, 0))
        if int(p.get(2, 1)) != 1 or stride != 1:
            raise ValueError(f"{layer.name}: dilation/stride other than 1 is not supported")
        in_ch = int(p[6]) // (out_ch * kernel * kernel)
        weight = reader.tagged(int(p[6])).reshape(out_ch, in_ch, kernel, kernel)
        inputs = [self.name(layer.inputs[0]), self._const(f"{layer.name}.weight", weight)]
        if int(p.get(5, 0)):
            inputs.append(self._const(f"{layer.name}.bias", reader.raw_fp32(out_ch)))
        self._node("Conv", inputs, self._out(layer), layer.name, kernel_shape=[kernel, kernel], pads=[pad] * 4)

    def _prelu(self, layer, reader):
        count = int(layer.params.get(0, 1))
        # Shape (C,1,1) broadcasts per channel over NCHW.
        slope = reader.raw_fp32(count).reshape(count, 1, 1)
        self._node(
            "PRelu",
            [self.name(layer.inputs[0]), self._const(f"{layer.name}.slope", slope)],
            self._out(layer),
            layer.name,
        )

    def _pixelshuffle(self, layer, reader):
        # ncnn PixelShuffle (mode 0) is PyTorch's pixel_shuffle, which is ONNX DepthToSpace CRD.
        if int(layer.params.get(1, 0)) != 0:
            raise ValueError(f"{layer.name}: only PixelShuffle mode 0 is supported")
        factor = int(layer.params[0])
        self._node(
            "DepthToSpace", [self.name(layer.inputs[0])], self._out(layer), layer.name, blocksize=factor, mode="CRD"
        )

    def _interp(self, layer, reader):
        p = layer.params
        kind = int(p.get(0, 0))
        scale_h, scale_w = float(p.get(1, 1.0)), float(p.get(2, 1.0))
        if int(p.get(6, 0)):
            raise ValueError(f"{layer.name}: align_corner Interp is not supported")
        scales = self._const(f"{layer.name}.scales", np.array([1, 1, scale_h, scale_w], np.float32))
        inputs = [self.name(layer.inputs[0]), "", scales]
        if kind == 1:
            # ncnn nearest picks floor(dst / scale): that is ONNX asymmetric + floor.
            attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        elif kind == 2:
            attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
        elif kind == 3:
            # ncnn bicubic uses a = -0.75 and half-pixel centres, without antialiasing.
            attrs = {"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "cubic_coeff_a": -0.75}
        else:
            raise ValueError(f"{layer.name}: Interp resize type {kind} is not supported")
        self._node("Resize", inputs, self._out(layer), layer.name, **attrs)

    def _binaryop(self, layer, reader):
        if int(layer.params.get(0, 0)) != 0 or len(layer.inputs) != 2:
            raise ValueError(f"{layer.name}: only two-input BinaryOp add is supported")
        self._node("Add", [self.name(b) for b in layer.inputs], self._out(layer), layer.name)

    def _out(self, layer) -> str:
        # Remember the latest blob: the last one written is the network output (see model()).
        blob = layer.outputs[0]
        self.last = blob
        return blob

    def model(self):
        from onnx import TensorProto, helper

        # The last blob produced is the network output; rename it to a stable name the service relies on.
        last = self.last
        for node in self.nodes:
            node.output[:] = [_OUTPUT_NAME if o == last else o for o in node.output]
        dims = ["N", 3, "H", "W"]
        out_dims = ["N", 3, "H_out", "W_out"]
        graph = helper.make_graph(
            self.nodes,
            "realesrgan_animevideov3",
            [helper.make_tensor_value_info(_INPUT_NAME, TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info(_OUTPUT_NAME, TensorProto.FLOAT, out_dims)],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="imagemesh")
        model.ir_version = 8  # readable by every onnxruntime >= 1.14
        return model
