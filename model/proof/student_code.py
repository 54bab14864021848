"""A student's own code, read on the student's own machine: their file or notebook, their model class,
built at the reference's shape, and their loader.

A `.py` file runs as a module would (its `if __name__ == "__main__":` block does not). Of a notebook,
only what defines things runs: imports, classes, functions, and assignments of settings (literals, and
expressions of them); never what trains, downloads, prints or shells out, nor any loop or call that
builds or runs something. What was skipped is listed, with why.
"""
import ast
import dataclasses
import importlib.util
import inspect
import json
import re
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from model.proof.structure import CannotCheck

# The settings a student's config may call GPT-2's shape by, each set to the reference's (or to no dropout,
# and to biases where GPT-2 has them).
SETTINGS = {
    "n_layer": ("n_layer", "n_layers", "num_layers", "num_hidden_layers"),
    "n_head": ("n_head", "n_heads", "num_heads", "num_attention_heads"),
    "n_embd": ("n_embd", "n_embed", "emb_dim", "d_model", "embed_dim", "hidden_size", "embedding_dim"),
    "n_positions": ("block_size", "n_positions", "context_length", "max_seq_len", "max_position_embeddings",
                    "n_ctx", "context_size"),
    "vocab_size": ("vocab_size", "n_vocab"),
    "dropout": ("dropout", "drop_rate", "dropout_rate", "resid_pdrop", "attn_pdrop", "embd_pdrop", "p_dropout"),
    "bias": ("bias", "qkv_bias", "use_bias"),
}
# Calls a notebook's settings may make: they only read the machine.
READING_CALLS = {"torch.device", "torch.cuda.is_available", "torch.backends.mps.is_available", "int", "float",
                 "str", "bool", "dict", "tuple", "list", "len", "min", "max", "round", "abs"}
MODEL_NAMES = re.compile(r"gpt|language|model|transformer|lm$", re.IGNORECASE)


@dataclass
class StudentCode:
    path: Path
    namespace: dict  # what the file or the notebook's run cells defined
    source: str  # the code that ran
    skipped: list[dict] = field(default_factory=list)  # {"where", "code", "why"} for each statement not run


def read_student_code(path: str) -> StudentCode:
    """Run what a student's `.py` file or `.ipynb` notebook defines; CannotCheck when it does not run."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CannotCheck(f"no file at {path!r}: pass the .py file or the .ipynb notebook your GPT is in")
    if file.suffix == ".ipynb":
        return _run_notebook(file)
    if file.suffix != ".py":
        raise CannotCheck(f"{path!r} is neither a .py file nor an .ipynb notebook")
    source = file.read_text()
    _parsed(source, file.name)
    return StudentCode(file, _run_module(file, source, file.name), source)


def _parsed(source: str, where: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise CannotCheck(f"{where} line {error.lineno}: {error.msg}: fix it and check again") from None


def _run_module(file: Path, source: str, where: str) -> dict:
    """Run `source` as the module `file` would be: importable siblings, __name__ not "__main__"."""
    name = f"student_{re.sub(r'[^0-9A-Za-z_]', '_', file.stem)}"
    module = types.ModuleType(name)
    module.__file__ = str(file)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up there
    sys.path.insert(0, str(file.parent))
    try:
        exec(compile(source, str(file), "exec"), module.__dict__)
    except Exception as error:  # noqa: BLE001 - whatever their code raises, one line that says where
        raise CannotCheck(f"{where} does not run: {_their_line(error, file)}") from None
    finally:
        sys.path.remove(str(file.parent))
    return module.__dict__


def _their_line(error: BaseException, file: Path) -> str:
    """The error, and the last line of the student's own file it passed through."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == str(file)]
    where = f" (line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _run_notebook(file: Path) -> StudentCode:
    try:
        cells = json.loads(file.read_text())["cells"]
    except (ValueError, KeyError, TypeError) as error:
        raise CannotCheck(f"{file.name} is not a notebook Jupyter can open ({error})") from None
    kept, skipped = [], []
    for number, cell in enumerate(cells, start=1):  # numbered from the top, markdown cells too, as one reads them
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = source.splitlines()
        for line_number, line in enumerate(lines, start=1):
            if line.lstrip().startswith(("!", "%")):
                skipped.append(dict(where=f"cell {number} line {line_number}", code=line.strip(),
                                    why="a shell command" if line.lstrip().startswith("!") else "a notebook magic"))
                lines[line_number - 1] = ""
        tree = _parsed("\n".join(lines), f"{file.name} cell {number}")
        for statement in tree.body:
            why = _why_not_run(statement, {name for part in kept for name in _classes(part)})
            code = ast.get_source_segment("\n".join(lines), statement) or ""
            if why is None:
                kept.append(code)
            else:
                skipped.append(dict(where=f"cell {number} line {statement.lineno}", code=code.splitlines()[0], why=why))
    source = "\n\n".join(kept)
    return StudentCode(file, _run_module(file, source, file.name), source, skipped)


def _classes(code: str) -> list[str]:
    return [node.name for node in ast.parse(code).body if isinstance(node, ast.ClassDef)]


def _why_not_run(statement: ast.stmt, classes: set[str]) -> str | None:
    """None for a statement that only defines something; else why it is not run."""
    if isinstance(statement, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return None
    if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
        call = next((node for node in ast.walk(statement.value) if isinstance(node, ast.Call)
                     and not _reads_only(node, classes)), None)
        return None if call is None else _why_call(call)
    if isinstance(statement, (ast.For, ast.While, ast.AsyncFor)):
        calls = [node for node in ast.walk(statement) if isinstance(node, ast.Call)]
        return next((why for why in map(_why_call, calls) if why in ("trains", "downloads")), "a loop")
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return "a string"
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        return _why_call(statement.value)
    return "it does not only define something"


def _reads_only(call: ast.Call, classes: set[str]) -> bool:
    """A call a setting may make: one that reads the machine, or builds a config class of the notebook's."""
    name = ast.unparse(call.func)
    return name in READING_CALLS or (name in classes and name.lower().endswith("config"))


def _why_call(call: ast.Call) -> str:
    name = ast.unparse(call.func)
    if re.search(r"from_pretrained|download|urlopen|requests\.|wget|hf_hub", name):
        return "downloads"
    if re.search(r"backward|optim|zero_grad|\.step$|\btrain|\bfit\b", name, re.IGNORECASE):
        return "trains"
    if name in ("print", "display") or name.endswith(".show"):
        return "prints"
    if re.search(r"os\.system|subprocess|popen", name):
        return "shells out"
    return f"it runs code ({name}(...))"


# --- the model, built at the reference's shape -------------------------------------------------------

@dataclass
class Built:
    model: nn.Module
    how: str  # in words: "GPTModel(GPT_CONFIG_124M with context_length=1024, qkv_bias=True, drop_rate=0.0)"


def build_model(code: StudentCode, reference_config, expression: str | None = None,
                class_name: str | None = None) -> Built:
    """The student's model: `expression` evaluated in their namespace, or their model class at the reference's
    shape. CannotCheck when there is no model class, or the build raises."""
    namespace = code.namespace
    if expression is not None:
        try:
            model = eval(expression, namespace)  # their own expression, on their own machine
        except Exception as error:  # noqa: BLE001
            raise CannotCheck(f"--build {expression!r} raised {_their_line(error, code.path)}") from None
        if not isinstance(model, nn.Module):
            raise CannotCheck(f"--build {expression!r} gave a {type(model).__name__}, not an nn.Module")
        return Built(model, expression)
    cls = _model_class(code, class_name)
    shape = _reference_settings(reference_config)
    arguments, how = _arguments(cls, namespace, shape)
    try:
        model = cls(*arguments)
    except Exception as error:  # noqa: BLE001
        raise CannotCheck(f"building {how} raised {_their_line(error, code.path)}: pass --build with the "
                          f"expression that builds it") from None
    return Built(model, how)


def _model_class(code: StudentCode, class_name: str | None) -> type:
    """The class named, or the model class of the file: an nn.Module no other class of theirs is built from."""
    defined = {name: value for name, value in code.namespace.items() if isinstance(value, type)
               and issubclass(value, nn.Module) and value.__module__ == code.namespace["__name__"]}
    if class_name is not None:
        if class_name not in defined:
            raise CannotCheck(f"no model class {class_name!r} in {code.path.name}: its classes are "
                              f"{', '.join(defined) or 'none'}")
        return defined[class_name]
    names_in = _names_in_classes(code.source)
    used_inside = {name for name in defined if any(name in names for other, names in names_in.items() if other != name)}
    top = [name for name in defined if name not in used_inside]
    top = [name for name in top if MODEL_NAMES.search(name)] or top
    if len(top) != 1:
        found = ", ".join(top or defined) or "none"
        raise CannotCheck(f"no single model class found in {code.path.name} (nn.Module classes: {found}): pick one "
                          f"with --class NAME, or build it with --build EXPRESSION")
    return defined[top[0]]


def _names_in_classes(source: str) -> dict[str, set[str]]:
    """Each class of the code, and the names its body uses: a block class is used by the model's."""
    return {node.name: {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}
            for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)}


def _reference_settings(config) -> dict:
    return {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
            "n_positions": config.n_positions, "vocab_size": config.vocab_size, "dropout": 0.0, "bias": True}


def _setting(key: str) -> str | None:
    return next((setting for setting, names in SETTINGS.items() if key in names), None)


def _at_shape(value, shape: dict) -> tuple[object, list[str]]:
    """A config (a dict or a dataclass instance) with every setting it names set to the reference's shape."""
    fields = value if isinstance(value, dict) else {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    changes = {key: shape[setting] for key in fields if (setting := _setting(key)) and fields[key] != shape[setting]}
    changed = [f"{key}={new!r}" for key, new in changes.items()]
    if isinstance(value, dict):
        return {**value, **changes}, changed
    return dataclasses.replace(value, **changes), changed


def _arguments(cls: type, namespace: dict, shape: dict) -> tuple[list, str]:
    """What to build `cls` with at the reference's shape, and how it was built, in words."""
    parameters = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    required = [p for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not required:  # the lecture's way: the settings are the file's globals
        changed = [f"{key}={shape[setting]!r}" for key in list(namespace)
                   if (setting := _setting(key)) and namespace[key] != shape[setting]
                   and isinstance(namespace[key], (int, float, bool))]
        for key in list(namespace):
            if (setting := _setting(key)) and isinstance(namespace[key], (int, float, bool)):
                namespace[key] = shape[setting]
        return [], f"{cls.__name__}()" + (f" with the file's {', '.join(changed)}" if changed else "")
    if len(required) > 1:
        raise CannotCheck(f"{cls.__name__} takes {', '.join(p.name for p in required)}: build it with --build, such "
                          f"as --build \"{cls.__name__}(...)\"")
    configs = [(name, value) for name, value in namespace.items() if not name.startswith("_")
               and (isinstance(value, dict) and sum(_setting(key) is not None for key in value) >= 2
                    or dataclasses.is_dataclass(value) and not isinstance(value, type))]
    classes = [(name, value) for name, value in namespace.items() if isinstance(value, type)
               and dataclasses.is_dataclass(value) and name.lower().endswith("config")]
    if configs:
        name, value = configs[-1]
        config, changed = _at_shape(value, shape)
        return [config], f"{cls.__name__}({name}" + (f" with {', '.join(changed)})" if changed else ")")
    if classes:
        name, config_class = classes[-1]
        config, changed = _at_shape(config_class(), shape)
        return [config], f"{cls.__name__}({name}(" + ", ".join(changed) + "))"
    raise CannotCheck(f"no config found for {cls.__name__}({required[0].name}): define one (a dict of settings or a "
                      f"*Config dataclass), or build it with --build EXPRESSION")
