"""Feature inputs: what a metric reads, declared once, as torchmetrics' `add_state(name, default, dist_reduce_fx)`
declares what a metric accumulates and how it merges.

A `FeatureInput` names one extractor's per-image features (Inception's pool features and logits, DINOv2 CLS tokens,
...) and says everything the stages need to know about them:
- its name: the model role of a part, the key of `CellData.features` and `ReferenceData.features` (one output), and
  the top-level protocol block its extractor's protocol is recorded under;
- its outputs (`Output`): each array its extractor returns, the state array it becomes (`NAME`, and `reference_NAME`
  for the reference's rows), whether references store it (and its Fréchet state, its k-NN radii), and the metric
  need (`Need` value) it serves, so that a metric naming that need reads it; one output under the input's own name
  unless it declares several;
- its options (`InputOption`): `--KEY` on `sdeval score` and `sdeval models`, `score.KEY` in a bench config, keyword
  arguments of `score_folder` and the `Evaluator`, and (for references) options of `sdeval reference build`; and
  the FeatureOptions fields its extractor reads (`feature_options`: Inception's route and weights, options every
  command that extracts features has already);
- how its extractor (sdeval.features.base.FeatureExtractor) is built from those options and the run's device: the
  one decode pass feeds it with the other models; or the input whose extractor serves it (`host`: sFID's spatial
  rows ride the Inception pass, a hook);
- whether references store it: always (Inception's pool features, every reference's Fréchet state), or with
  `sdeval reference build --NAME`;
- how its rows merge across shards and ranks (`merge`).

A metric names the inputs it reads in `MetricSpec.inputs` (or the need an output serves, `Need.INCEPTION_POOL`);
prepare, the part merge, reference build, the Evaluator, the CLI options, `sdeval models` and the protocol are
derived from the declarations, so a new feature is one module and one registration: a built-in's lazy
`module:object` line below, `register(...)` in code, or a third-party package's `sdeval.inputs` entry point.

Three extensions serve the two CLIP models (features/clip_input.py: `--clip-*` for the prompt metrics, `--cmmd-*`
for CMMD), whose choice is more than a declaration of defaults:
- `choose`: what its loader gets, from every input's option values, so one input's default may follow another's
  options (CMMD takes the `--clip-*` model when only that one is given, with a warning: `Chosen.warnings`); inputs
  whose chosen `model`s are equal share one extractor (one CLIP model loaded and run once for both);
- `protocol_at`: where the protocol records its extractor, a top-level block of its name or a place in a metric's
  own block (CMMD's model in `protocol["cmmd"]["clip"]`), and `protocol_blocks`, blocks it adds beside it (where the
  prompts the CLIP text model embeds came from);
- `InputOption.score_field`: an option whose value is a ScoreOptions field of its name (the judges, the aesthetic
  head and `sdeval models` read the `--clip-*` model there), declared here all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sdeval.core.errors import SdevalError
from sdeval.core.registry import Registry, load_object

#: The one merge rule an input may declare: one row per image, rows concatenated in image order across shards and
#: ranks (as one process would have them). A summed statistic (a Fréchet state) would be a second rule.
ROWS = "rows"
MERGES = (ROWS,)
#: Value types an option may take: its values are checked (config files) and parsed (command line) by these.
KINDS = (str, int, float)


@dataclass(frozen=True)
class InputOption:
    """One option of a feature input: `key` is its name in ScoreOptions' input values and config files
    (`dinov2_model`: `--dinov2-model`, `score.dinov2_model`)."""

    key: str
    help: str  # the command's help, before "[default: ...]"
    default: Any = None  # the value a run gets when none is given (None: the input's own default, `default_label`)
    #: What the default is, for help texts and `sdeval models` (a callable is read only when shown).
    default_label: str | Callable[[], str] | None = None
    metavar: str | None = None
    kind: type = str  # str, int or float
    minimum: float | None = None  # numbers: the least value taken
    path: bool = False  # a local file or folder where one exists (a config file's own folder is looked in first)
    reference_help: str | None = None  # `reference build`'s help (None: `help`)
    reference_default: str | None = None  # `reference build`'s default, where it differs (None: `default_label`)
    #: Its value is the ScoreOptions field of its name, not one of `ScoreOptions.inputs` (others read it there: the
    #: `--clip-*` model serves the judges and the aesthetic head too); the commands place it among their own options.
    score_field: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def describe_default(self, reference: bool = False) -> str:
        if reference and self.reference_default is not None:
            return self.reference_default
        label = self.default_label() if callable(self.default_label) else self.default_label
        return label if label is not None else str(self.default)

    def check(self, value: Any) -> Any:
        """The value to use, or ValueError saying what the option expects."""
        if self.kind is str:
            if isinstance(value, str) and value:
                return value
            raise ValueError("text")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.kind is int and value % 1):
            raise ValueError(self._expects())
        if self.minimum is not None and value < self.minimum:
            raise ValueError(self._expects())
        return self.kind(value)

    def _expects(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        return what if self.minimum is None else f"{what} >= {self.minimum:g}"


@dataclass(frozen=True)
class Output:
    """One array an input's extractor returns per image."""

    feature: str  # its name in the extractor's `extract` result
    state: str  # the state array (and `reference_STATE`), the part's and CellData's name of the rows
    reference: bool = True  # references store it (Inception's logits serve IS alone, which reads no reference)
    #: The metric need (a sdeval.metrics.registry.Need value) it serves: a metric that declares that need reads it.
    need: str | None = None
    #: References keep its Fréchet state beside its rows, named as its state array (Inception's `pool`: the file's
    #: FID statistics, summed when references merge), with the state's eigen-decomposition.
    frechet: bool = False
    #: References keep its rows' k-NN radii (`reference build --radii-k`: precision/recall, density/coverage).
    knn_radii: bool = False


@dataclass(frozen=True)
class Chosen:
    """What the run's option values choose for one input: the values its loader gets (its options' keys), warnings
    about the choice, and the model they name, comparable across inputs (None: its own, shared with none)."""

    values: dict[str, Any]
    warnings: tuple[str, ...] = ()
    model: Hashable | None = None


@dataclass(frozen=True)
class FeatureInput:
    """One per-image feature a metric may read (module docstring)."""

    name: str  # state array, CellData/ReferenceData key, protocol block
    label: str  # the model as `sdeval models` and errors name it ("DINOv2 model")
    feature: str  # the name its extractor's `extract` returns the rows under
    #: The extractor from the option values (every option's, by key) and the run's torch.device (and, for a host,
    #: `hosted=`); or that callable's lazy `module:object` name, imported when a run builds the extractor (so reading
    #: the declaration loads no model library). None for an input served by its `host`'s extractor.
    load: Callable[..., Any] | str | None = None
    options: tuple[InputOption, ...] = ()
    #: References store it: `sdeval reference build --NAME` adds its rows to the file (`reference_NAME` arrays).
    reference: bool = True
    #: Every reference stores it, with no flag (Inception's pool features: every reference file's Fréchet state).
    always_stored: bool = False
    #: Its arrays when the extractor returns several (Inception's pool features and logits); empty: one, `feature`
    #: under the input's name.
    outputs: tuple[Output, ...] = ()
    #: The input whose extractor serves it (sFID's spatial rows ride the Inception pass): that extractor is built
    #: with `hosted=` the names of the inputs it serves in the run, and none of this input's own.
    host: str | None = None
    #: FeatureOptions fields its extractor reads (Inception's `preprocess`, `inception_weights`): options every
    #: command that extracts features has already, handed to its loader beside its own options' values.
    feature_options: tuple[str, ...] = ()
    #: What `reference build --NAME` says it stores ("the DINOv2 features FD_DINOv2 needs").
    stores: str = ""
    #: The option naming a hub id or local folder of a transformers model, which `sdeval models` looks for (None:
    #: the input has no model file to look for).
    model_option: str | None = None
    merge: str = ROWS
    #: What its loader gets from the run's option values, every input's by key (None where not given), as `Chosen`;
    #: or that callable's lazy `module:object` name. None: its own options' values, defaults filled in. Inputs whose
    #: chosen models are equal (and whose feature options agree) share one extractor, built by the first one's loader.
    choose: Callable[[Mapping[str, Any]], Chosen] | str | None = None
    #: Metric needs its extractor serves besides its outputs' (the prompts' text embeddings, by the same CLIP model).
    also_serves: tuple[str, ...] = ()
    #: Where the protocol records its extractor: empty, a top-level block of its name; else a place inside a block
    #: some metric writes (CMMD's model: `("cmmd", "clip")`), recorded only where that block is.
    protocol_at: tuple[str, ...] = ()
    #: Blocks the protocol records beside it where a run uses it, from the run's ScoreOptions (where the prompts the
    #: CLIP text model embeds came from); or that callable's lazy `module:object` name.
    protocol_blocks: Callable[[Any], dict[str, Any]] | str | None = None

    @property
    def flag(self) -> str:
        """`reference build`'s flag that stores it."""
        return "--" + self.name.replace("_", "-")

    @property
    def arrays(self) -> tuple[Output, ...]:
        """Every array its extractor gives it: the declared outputs, else `feature` under the input's name."""
        return self.outputs or (Output(self.feature, self.name, self.reference),)

    @property
    def stored(self) -> tuple[str, ...]:
        """The state arrays a reference holds of it (none where references do not store it)."""
        return tuple(o.state for o in self.arrays if o.reference) if self.reference else ()

    def serves(self, stored: bool = False) -> frozenset[str]:
        """The metric needs (Need values) its extractor serves; with `stored`, those of the outputs references
        store."""
        found = {o.need for o in self.arrays if o.need is not None and (o.reference or not stored)}
        return frozenset(found if stored else found | set(self.also_serves))

    def values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option's value: the one in `given`, else its default."""
        return {o.key: given[o.key] if given.get(o.key) is not None else o.default for o in self.options}

    def chosen(self, given: Mapping[str, Any]) -> Chosen:
        """What the option values `given` (every input's, by key) choose for it: `choose`'s, else its own values."""
        if self.choose is None:
            return Chosen(self.values(given))
        choose = _callable(self, self.choose)
        return choose({key: value for key, value in given.items() if value is not None})

    def build(
        self,
        given: Mapping[str, Any],
        device: Any,
        features: Any = None,
        hosted: tuple[str, ...] = (),
        chosen: Chosen | None = None,
    ) -> Any:
        """Its extractor for option values `given` (missing ones take their defaults; `chosen`: what they chose
        already) on `device`, reading its `feature_options` from the FeatureOptions `features`; `hosted`: the
        inputs it serves besides itself."""
        if self.load is None:
            raise SdevalError(f"feature input {self.name!r} is served by {self.host!r}'s extractor; it has none")
        load = _callable(self, self.load)
        values = dict((chosen or self.chosen(given)).values)
        values.update(self.feature_values(features))
        return load(values, device, hosted=hosted) if hosted else load(values, device)

    def feature_values(self, features: Any) -> dict[str, Any]:
        """Its `feature_options`' values in the FeatureOptions `features`."""
        if self.feature_options and features is None:
            raise SdevalError(f"feature input {self.name!r} reads feature options {self.feature_options}: none given")
        return {key: getattr(features, key) for key in self.feature_options}

    def blocks(self, options: Any) -> dict[str, Any]:
        """The protocol blocks it adds beside its own where a run with ScoreOptions `options` uses it."""
        return {} if self.protocol_blocks is None else _callable(self, self.protocol_blocks)(options)

    def option(self, key: str) -> InputOption:
        return next(o for o in self.options if o.key == key)


def _callable(declared: FeatureInput, target: Callable[..., Any] | str) -> Callable[..., Any]:
    found = target if callable(target) else load_object(target)
    if not callable(found):
        raise SdevalError(f"feature input {declared.name!r}: {target!r} is not callable")
    return found


def _check(name: str, declared: FeatureInput) -> None:
    if not isinstance(declared, FeatureInput):
        raise SdevalError(f"feature input {name!r} is a {type(declared).__name__}, not a FeatureInput")
    if declared.name != name:
        raise SdevalError(f"feature input {name!r} is registered under another name than its own ({declared.name!r})")
    if declared.merge not in MERGES:
        raise SdevalError(f"feature input {name!r}: merge {declared.merge!r} is not one of {', '.join(MERGES)}")
    for option in declared.options:
        if option.kind not in KINDS:
            raise SdevalError(
                f"feature input {name!r}: option {option.key} has kind {option.kind!r}, not str/int/float"
            )
    if any((o.frechet or o.knn_radii) and not (o.reference and declared.reference) for o in declared.arrays):
        raise SdevalError(f"feature input {name!r}: a Fréchet state or k-NN radii are kept only of stored outputs")
    if (declared.load is None) == (declared.host is None):
        raise SdevalError(f"feature input {name!r}: declare either its loader or the input that hosts it, not both")
    others = [other for other in _INPUTS.loaded() if other.name != name]
    taken = {o.key: other.name for other in others for o in other.options}
    clash = [o.key for o in declared.options if o.key in taken]
    if clash:
        raise SdevalError(f"feature input {name!r}: option(s) {', '.join(clash)} belong to another input")
    states = {o.state for other in others for o in other.arrays}
    clash = [o.state for o in declared.arrays if o.state in states]
    if clash:
        raise SdevalError(f"feature input {name!r}: state array(s) {', '.join(clash)} belong to another input")


#: Every feature input: the built-ins by lazy reference (loaded on first use), then those registered in code, then
#: the `sdeval.inputs` entry points of installed packages.
_INPUTS: Registry[FeatureInput] = Registry("feature input", group="sdeval.inputs", check=_check)
_INPUTS.register("inception", "sdeval.features.inception_input:INPUT")  # pool features and logits, one pass
# The CLIP models next: a part's, a state file's and a reference file's arrays have always come in this order.
_INPUTS.register("clip", "sdeval.features.clip_input:CLIP")  # CLIP score, R-precision, diversity; prompts
_INPUTS.register("cmmd", "sdeval.features.clip_input:CMMD")  # its default follows --clip-* when only that is given
_INPUTS.register("dinov2", "sdeval.features.dinov2_input:INPUT")
_INPUTS.register("inception_spatial", "sdeval.features.inception_spatial:INPUT")  # sFID: the Inception pass serves it


def register(declared: FeatureInput) -> FeatureInput:
    """Add a feature input; its name and option keys must be new."""
    _INPUTS.values()  # its option keys are checked against every other input's
    _INPUTS.register(declared.name, declared)
    return declared


def unregister(name: str) -> None:
    """Remove a feature input (tests that register their own)."""
    _INPUTS.unregister(name)


def get(name: str) -> FeatureInput:
    return _INPUTS.get(name)


def names() -> list[str]:
    return _INPUTS.names()


def inputs() -> Iterator[FeatureInput]:
    """Every registered feature input, in registration order."""
    return iter(_INPUTS.values())


def options(score_field: bool | None = None) -> list[tuple[FeatureInput, InputOption]]:
    """Every input's options, in registration order; with `score_field`, only those that are (True) or are not
    (False) ScoreOptions fields of their own."""
    return [
        (declared, option)
        for declared in inputs()
        for option in declared.options
        if score_field is None or option.score_field == score_field
    ]


def option_keys(score_field: bool | None = None) -> tuple[str, ...]:
    return tuple(option.key for _, option in options(score_field))


def serving(needs: set[str] | frozenset[str], stored: bool = False) -> tuple[str, ...]:
    """The inputs whose outputs serve any of the metric needs `needs` (Need values), in registration order; with
    `stored`, only by outputs that references store."""
    return tuple(declared.name for declared in inputs() if declared.serves(stored) & needs)


def with_hosts(names: Iterable[str]) -> list[FeatureInput]:
    """The inputs in `names` and the hosts of those a host serves, in registration order."""
    wanted = set(names)
    wanted |= {host for name in list(wanted) if (host := get(name).host) is not None}
    return [d for d in inputs() if d.name in wanted]


def choices(names: Iterable[str], given: Mapping[str, Any]) -> dict[str, Chosen]:
    """What the option values `given` choose for each input in `names` that has a loader (hosts included)."""
    return {d.name: d.chosen(given) for d in with_hosts(names) if d.host is None}


def build_all(
    names: Iterable[str],
    given: Mapping[str, Any],
    device: Any,
    features: Any = None,
    chosen: Mapping[str, Chosen] | None = None,
) -> dict[str, Any]:
    """The extractor of each input in `names` and of the hosts of those a host serves, by input name in registration
    order: each built once from the option values `given` (`chosen`: what they chose, `choices`, where the caller has
    it already) and the FeatureOptions `features`, a host with `hosted=` the inputs it serves (sFID's spatial rows
    ride the Inception pass), a hosted input given its host's extractor, inputs whose chosen models are equal one
    extractor (Chosen.model: CLIP score's and CMMD's CLIP model)."""
    names = tuple(names)  # read twice
    declared = with_hosts(names)
    chosen = choices(names, given) if chosen is None else chosen
    built: dict[str, Any] = {}
    shared: dict[Hashable, Any] = {}
    for d in declared:
        if d.host is not None:
            continue
        hosted = tuple(h.name for h in declared if h.host == d.name)
        model = chosen[d.name].model
        key = None if model is None else (model, tuple(sorted(d.feature_values(features).items())), hosted)
        if key is not None and key in shared:
            built[d.name] = shared[key]
            continue
        built[d.name] = d.build(given, device, features, hosted, chosen[d.name])
        if key is not None:
            shared[key] = built[d.name]
    return {d.name: built[d.host or d.name] for d in declared}


def reference_outputs(names: Iterable[str]) -> list[Output]:
    """The outputs a reference keeps of the inputs in `names` and of their hosts, in registration order (of the
    Inception extractor serving sFID: the pool features and the spatial rows, not the logits)."""
    return [o for d in with_hosts(names) if d.reference for o in d.arrays if o.reference]


def reference_arrays() -> tuple[str, ...]:
    """Every state array a reference may hold of the inputs, in registration order."""
    return tuple(state for declared in inputs() for state in declared.stored)
