"""Train: choose backbone, shots and mode; the job runs off the script thread with live curves."""

import contextlib
import re
from pathlib import Path
from typing import NamedTuple

import streamlit as st

from ebsd_core.assemble import region_shots
from ebsd_core.augment import AugmentConfig
from ebsd_core.backbones import CHANNEL_MODES, describe_registry
from ebsd_core.errors import EbsdError, InputError
from ebsd_core.fewshot import check_shots, suggested_shots
from ebsd_core.io.readers import open_patterns
from ebsd_core.jobs import FINISHED, JobFunction, JobState
from ebsd_core.phases import CATALOGUE, material_label, parse_space_group, space_group_symbol
from ebsd_core.preprocess import INPUT_SIZES, input_size_for
from ebsd_core.prior import minutes_on_two_cores, prior_job, prior_materials, settings_for
from ebsd_core.rehearsal import REHEARSAL_PER_CLASS, materials_left
from ebsd_core.store import MAX_VIEWS, VALIDATION_TARGET, default_store, list_models, read_card, validate_name
from ebsd_core.train import TrainConfig
from ebsd_core.wording import counted, is_whole_number
from ebsd_core.workflows import demo_train_job, train_runs_job
from pages.common import (
    active_dataset_name,
    active_dataset_path,
    apply_job_dataset,
    apply_job_model,
    current_model,
    curves_figure,
    enter_page,
    for_the_user,
    job_manager,
    keep_hidden_widgets,
    keep_hidden_widgets_of,
    latest_job_shown_on,
    material_choice,
    name_input,
    read_only_store_warning,
    renew_default_name,
    restart_job,
    session_dir,
    session_id,
    show_error,
    show_job,
    show_unfinished_job,
    start_again_button,
    start_job,
    sweep_run,
    test_set,
)

enter_page()

#: The rehearsal radio's choices and the rehearsal source each sets (None: off); the first is the default.
MAX_REPEATS = 5  # of each run: more is the CLI's fewshot-curve --seeds, for a night on a CPU
REHEARSAL_CHOICES = {"its materials": "prior", "its materials + catalogue": "catalogue", "off": None}

st.title("Train")


class DatasetFacts(NamedTuple):
    shape: tuple[int, int]  # the patterns' ((60, 60) when the file cannot be read)
    materials: list[str]  # the catalogue materials it holds: what an EBSD prior for it should leave out
    shots: int  # shots per class to offer
    classes: set[str]  # its space-group symbols
    of_map_regions: bool  # made of labelled regions of a scan's map


# cache_resource: this page's own class cannot be pickled, as cache_data would; the facts are only read
@st.cache_resource(max_entries=16, show_spinner=False)
def dataset_facts(path: str, modified: float) -> DatasetFacts:
    """What the training form needs to know of the dataset; read once per file version."""
    try:
        source = open_patterns(path)
    except EbsdError:
        return DatasetFacts((60, 60), [], 10, set(), False)
    found = source.material if source.material is not None else []
    of_map_regions = source.provenance.get("generator") == "map regions"
    if not source.labelled:
        shots = 10
    else:
        shots = region_shots(source.labels) if of_map_regions else suggested_shots(source.labels, source.split)
    return DatasetFacts(
        tuple(source.pattern_shape),
        sorted({str(m) for m in found} & set(CATALOGUE)),
        shots,
        {space_group_symbol(sg) for sg in source.classes or []},
        of_map_regions,
    )


def preferred_start(starts: dict[str, dict], facts: DatasetFacts) -> str | None:
    """The session's model when training should start from it: a prior just built here, or the model a scan was
    mapped with before regions of that scan were labelled (of the same classes, or of more when it learnt from
    simulated patterns, which it then rehearses), else None (ImageNet)."""
    current = current_model()
    model = starts.get(current)
    if model is None:
        return None
    if model.get("prior"):
        return current
    if not facts.of_map_regions or not facts.classes <= set(model["classes"]):
        return None
    # a six-class model rehearsed beat ImageNet on a Ni/Ni3Al scan (0.86 and 0.96 of the map right against 0.75 and
    # 0.83, 2 and 4 grains); without rehearsal 2 grains gave 0.63 (bench/RESULTS.md)
    return current if set(model["classes"]) == facts.classes or model.get("simulated_materials") else None


def models_of_these_phases(models: list[dict]) -> str:
    """Saved models as a caption names them: ``"ni-pair (simulated Ni, Ni3Al) knows"``, ``"a (...) and b know"``."""
    named = [
        f"**{m['name']}**"
        + (f" (simulated {', '.join(map(material_label, learnt))})" if (learnt := m.get("simulated_materials")) else "")
        for m in models
    ]
    return f"{named[0]} knows" if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]} know"


def rehearsal_source(start: dict | None, choice: str | None, facts: DatasetFacts) -> str | None:
    """The rehearsal to train with: the chosen source, when the start model learnt from simulated materials and some
    of them (or of the catalogue, with that source) of the dataset's classes are not in the dataset; else None."""
    learnt = (start or {}).get("simulated_materials") or []
    if not choice or not learnt:
        return None
    left = materials_left(learnt, set(facts.materials), [parse_space_group(c) for c in facts.classes], choice)
    if not left:
        st.info(f"Rehearsal left out: this dataset holds every material {start['name']} learnt from.")
        return None
    return choice


class MoreSettings(NamedTuple):
    lr: float | None  # None: the default of the initialisation
    batch_size: int
    frozen_epochs: int
    rotation: float
    first_seed: int
    unknown_threshold: float
    crystal_rotation: float
    noise: float
    channel_mode: str
    patience: int | None  # None: a third of the epochs, 5 at least; 0: off

    def patience_for(self, epochs: int) -> int:
        """Epochs without a lower validation loss before training stops (as many as it runs: never)."""
        if self.patience is None:
            return max(5, epochs // 3)
        return self.patience or epochs


#: The start of the keys of the Train form's widgets, which it keeps (:func:`pages.common.keep_hidden_widgets`).
FORM_KEY = "train-"
#: The learning rates offered; None is each initialisation's own (TrainConfig.learning_rate).
LEARNING_RATES = [None, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
#: The early-stopping patiences offered (MoreSettings.patience).
PATIENCES = [None, 3, 5, 8, 10, 20, 0]


def degrees_input(place, label: str, most: float, default: float, step: float, help: str, key: str) -> float:
    """An angle of augmentation from 0 to ``most`` degrees, in whole degrees."""
    return float(place.number_input(label, 0.0, most, float(default), step, format="%.0f", help=help, key=key))


def more_settings() -> MoreSettings:
    """The training settings the command line's train takes besides the form's first ones, folded away: their
    defaults are the CLI's."""
    with st.expander("More settings"):
        c1, c2, c3 = st.columns(3, vertical_alignment="bottom")
        lr = c1.select_slider(
            "Learning rate",
            LEARNING_RATES,
            value=None,
            format_func=lambda r: "default" if r is None else f"{r:g}",
            help="AdamW's rate. By default each initialisation's own: the backbone's fine-tuning rate from ImageNet, "
            "1e-3 from an EBSD prior or saved model, 3e-3 from scratch.",
            key=f"{FORM_KEY}lr",
        )
        batch_size = c2.select_slider(
            "Batch size", [8, 16, 32, 64], value=TrainConfig.batch_size, key=f"{FORM_KEY}batch"
        )
        frozen = c3.number_input(
            "Frozen epochs",
            0,
            50,
            TrainConfig.frozen_warmup_epochs,
            help="Transfer only: train the new classifier alone for this many epochs before the whole network.",
            key=f"{FORM_KEY}frozen",
        )
        c4, c5, c6 = st.columns(3, vertical_alignment="bottom")
        rotation = degrees_input(
            c4,
            "Rotation (deg)",
            180.0,
            AugmentConfig.rotation,
            1.0,
            "Augment each training pattern with an in-plane rotation of up to this many degrees (a camera "
            "turned on its flange); 0: none.",
            f"{FORM_KEY}rotation",
        )
        seed = c5.number_input(
            "First seed",
            0,
            100_000,
            TrainConfig.seed,
            help="Of the few-shot sample and the new layers' weights.",
            key=f"{FORM_KEY}seed",
        )
        threshold = c6.slider(
            "Unknown below",
            0.0,
            0.99,
            TrainConfig.unknown_threshold,
            0.01,
            help="The model's predictions are 'unknown' where the top class has less probability than this "
            "(stored with it; a phase map can set another).",
            key=f"{FORM_KEY}threshold",
        )
        c7, c8, c9 = st.columns(3, vertical_alignment="bottom")
        crystal_rotation = degrees_input(
            c7,
            "Crystal rotation (deg)",
            90.0,
            AugmentConfig.crystal_rotation,
            5.0,
            "Augment with true patterns of the crystal turned up to this many degrees about a random axis, "
            "re-projected through the projection centre; 0: none. 30 degrees lifted unseen orientations from "
            "0.77 to 0.84 and held-out materials from 0.64 to 0.71 (20 shots, 3 seeds; bench/RESULTS.md).",
            f"{FORM_KEY}crystal-rotation",
        )
        noise = c8.number_input(
            "Noise (x pattern std)",
            0.0,
            10.0,
            float(AugmentConfig.noise_std),
            0.1,
            format="%.1f",
            help="Augment with white noise of up to this many times each pattern's standard deviation. Up to 2 "
            "did not help real patterns read right and cost held-out materials 0.958 -> 0.760 (bench/RESULTS.md).",
            key=f"{FORM_KEY}noise",
        )
        channels = c9.selectbox(
            "Grey input",
            CHANNEL_MODES,
            format_func=lambda m: {"adapt": "adapted stem", "replicate": "3 channels"}[m],
            help="How a grey pattern meets a colour network: its first layer's RGB kernels summed into one grey "
            "channel (the default), or the pattern copied to three channels (0.706 against 0.667 in one seed, "
            "not conclusive; bench/RESULTS.md). A saved model to start from must take its patterns the same way.",
            key=f"{FORM_KEY}channels",
        )
        patience = st.columns(3)[0].select_slider(
            "Early stopping",
            PATIENCES,
            value=None,
            format_func=lambda p: "auto" if p is None else ("off" if p == 0 else f"after {p} epochs"),
            help="Training stops when the validation loss has not fallen for this many epochs, keeping the best "
            "epoch's weights. auto: a third of the epochs, 5 at least; off: every epoch runs (runs compared at a "
            "fixed number of epochs, as in the paper).",
            key=f"{FORM_KEY}patience",
        )
    return MoreSettings(
        lr,
        int(batch_size),
        int(frozen),
        rotation,
        int(seed),
        float(threshold),
        crystal_rotation,
        float(noise),
        str(channels),
        patience,
    )


def start_kind(model: dict) -> str:
    return "EBSD prior" if model.get("prior") else f"saved model of {', '.join(model['classes'])}"


def prior_form(path: Path) -> str | None:
    """The "Build an EBSD prior" expander; returns the job id when one was started."""
    facts = dataset_facts(str(path), path.stat().st_mtime)
    shape, materials = facts.shape, facts.materials
    settings = settings_for(shape)
    minutes = minutes_on_two_cores(settings)
    exclude_key = f"prior-exclude@{path}"  # this dataset's materials are offered
    keep_hidden_widgets(exclude_key)  # as chosen, after a visit to another page
    with st.expander(f"Build an EBSD prior (about {counted(minutes, 'minute')} on a 2-core CPU)"):
        st.caption(
            "A prior is the ImageNet network trained further on simulated patterns of the other catalogue "
            "materials of the six cubic space groups. A few-shot model started from it has seen band geometry "
            "and superlattice bands before; on development maps it put 0.94 of points right before the grain "
            "clean-up, against 0.86 from ImageNet alone. Leave out the phases your model will tell apart. "
            f"It is simulated at {settings.pattern_size} px and trained at a {settings.input_size} px input, "
            "like this dataset's patterns."
        )
        with st.form("prior"):
            exclude = st.multiselect(
                "Materials the prior must not see",
                sorted(CATALOGUE),
                materials,
                format_func=material_choice,
                key=exclude_key,
            )
            prior_name = name_input("Prior name", "prior")
            if not st.form_submit_button("Build the prior", disabled=read_only):
                return None
        try:
            if (default_store() / validate_name(prior_name)).exists():
                raise InputError(f"a model named {prior_name} exists in the store; choose another name")
            prior_materials(exclude)  # says so now when too little would be left to train on
            params = {"exclude": exclude, "name": prior_name, "settings": settings.to_dict()}
            job = start_job("prior", f"EBSD prior {prior_name}", lambda ctx: prior_job(ctx, params))
            if job:
                renew_default_name("prior")
            return job
        except (ValueError, EbsdError) as exc:  # a ValueError of its own is unexpected, and said so
            show_error(exc)
    return None


manager = job_manager()


path = active_dataset_path()
job_id = st.session_state.get("train_job") or latest_job_shown_on("pages/train.py")
read_only = path is not None and read_only_store_warning()  # training saves the models it trains

if path is None and not job_id:
    st.info("No dataset yet: simulate or upload one on the **Data** page, or run the demo on **Home**.")
elif path is not None:
    registry = describe_registry()
    names = [r["name"] for r in registry]
    facts = dataset_facts(str(path), path.stat().st_mtime)
    shape, shots_offered = facts.shape, facts.shots
    # the form opens with the settings last submitted, also after a visit to another page; the shots, input size
    # and start offered for a dataset are kept for each dataset
    keep_hidden_widgets_of(FORM_KEY)
    with st.form("train"):
        backbone = st.selectbox(
            "Backbone",
            names,
            format_func=lambda n: (
                n
                + (
                    ""
                    if next(r for r in registry if r["name"] == n)["pretrained_offline"]
                    else "  (no offline ImageNet weights: scratch only)"
                )
            ),
            key=f"{FORM_KEY}backbone",
        )
        c1, c2, c3 = st.columns(3, vertical_alignment="bottom")  # the shots label takes two lines on a narrow page
        shots_text = c1.text_input(
            "Shots per class (one value or a sweep: 5,10,20)",
            str(shots_offered),
            help="Training patterns per class. Of the rest of each class, up to 10 validate (one at least) and the "
            "others test: fewer than 10 are offered when a class of this dataset could not keep one of each.",
            key=f"{FORM_KEY}shots@{path}",
        )
        epochs = c2.number_input("Epochs", 1, 200, 15, key=f"{FORM_KEY}epochs")
        input_size = c3.select_slider(
            "Input size (px)",
            INPUT_SIZES,
            value=input_size_for(shape),
            help="Patterns are resized to this. The default keeps every pixel of the dataset's patterns; "
            "smaller inputs train and predict faster but lose the fine band detail that tells the phases apart.",
            key=f"{FORM_KEY}input-size@{path}",
        )
        c4, c5 = st.columns(2)
        views = c4.number_input(
            "Test-time views",
            1,
            MAX_VIEWS,
            TrainConfig.views,
            help="The saved model averages each pattern over this many re-projected views of its crystal: "
            "fewer orientation-specific mistakes. Only patterns whose first view is unsure (below "
            f"{TrainConfig.views_below:.0%} for one class) get the other views, so prediction takes up to this "
            "many times as long, usually far less.",
            key=f"{FORM_KEY}views",
        )
        repeats = c5.number_input(
            "Repeats",
            1,
            MAX_REPEATS,
            1,
            help="Each run trained this many times, each on another few-shot sample of the dataset and another "
            "initialisation of its new layers (seeds from the first one, under More settings): a sweep's few-shot "
            "curve on Results then gives the mean and spread of its repeats, as Kaufmann et al. report theirs. Each "
            "repeat takes a run's time.",
            key=f"{FORM_KEY}repeats",
        )
        binning = st.select_slider(
            "Also train for cameras binned up to",
            [1, 2, 3, 4],
            value=1,
            format_func=lambda f: "off" if f == 1 else f"{f}x",
            help="For scans with fewer pixels than this dataset's patterns (4x: 240 px training patterns, "
            "60 px scans): training also shows each pattern as such a camera records it. 240 px models "
            "read 60 px simulations 0.77 right without it and 0.945 with 4x, and 240 px ones as well as "
            "before (0.985 against 0.983; bench/RESULTS.md).",
            key=f"{FORM_KEY}binning",
        )
        initialisations = ["ImageNet transfer", "scratch", "both side by side"]
        mode = st.radio("Initialisation", initialisations, horizontal=True, key=f"{FORM_KEY}mode")
        saved = sorted((r for r in list_models() if not r.get("error")), key=lambda r: not r.get("prior"))
        starts = {r["name"]: r for r in saved}  # the EBSD priors first
        current = preferred_start(starts, facts)
        start_key, preferred_key = f"{FORM_KEY}start@{path}", f"preferred-start@{path}"  # the latter no widget's
        if current and st.session_state.get(preferred_key) != current:  # a prior built since, a map's model: offered
            st.session_state[start_key] = current
        st.session_state[preferred_key] = current
        start = st.selectbox(
            "Transfer starts from",
            ["ImageNet weights", *starts],
            index=1 + list(starts).index(current) if current else 0,
            format_func=lambda n: n if n not in starts else f"{n} ({start_kind(starts[n])})",
            help="An EBSD prior (build one below) instead of the ImageNet weights alone: better few-shot "
            "accuracy when the prior has not seen the phases of this dataset. Or any saved model, such as one "
            "trained on simulated patterns of a scan's phases, to fine-tune on labelled regions of the scan, "
            "rehearsing its materials (below): on simulated scans, 4 grains of each phase then put 0.998-0.999 of "
            "the map right (0.935 and 0.985 for such models alone), where from ImageNet they gave 0.77-0.83 "
            "(bench/RESULTS.md).",
            key=start_key,
        )
        just_these = [m for m in saved if set(m["classes"]) == facts.classes]
        if facts.of_map_regions and just_these and current not in {m["name"] for m in just_these}:
            st.caption(
                f"{models_of_these_phases(just_these)} just these phases: starting from a model of the scan's "
                "phases, rehearsed, 4 grains of each phase mapped simulated scans 0.998-0.999 right, where a "
                "six-class model gave 0.96 (bench/RESULTS.md)."
            )
        if facts.of_map_regions and not just_these:
            st.caption(
                f"No saved model knows just these phases ({', '.join(sorted(facts.classes))}). For a better map, "
                "first train one on simulated patterns of the scan's phases (**Data**: Simulate, choose the "
                "materials, then train here), make the dataset of the regions again on **Phase map** (they are "
                "kept) and start from that model, rehearsing its materials: on simulated scans, 4 grains of each "
                "phase then put 0.998-0.999 of the map right, 0.96 from a six-class model and 0.77-0.83 from "
                "ImageNet."
            )
        rehearse = st.radio(
            "Rehearsal (from an EBSD prior or a model trained on simulated patterns)",
            list(REHEARSAL_CHOICES),
            horizontal=True,
            help=f"{REHEARSAL_PER_CLASS} simulated patterns per class join the shots, weighted like them: of the "
            "materials the model training starts from learnt (an EBSD prior's, or those of a model trained on "
            "simulated patterns alone), or those and every other catalogue material the dataset does not name "
            "(more superlattice phases, but also any phase a prior was told not to see, and for real data the "
            "simulated phases it holds). About twice the training time. From a prior, on materials the model has "
            "not seen: 0.95-0.97 instead of 0.82 (20 shots, 240 px). From a model of a scan's phases, fine-tuned "
            "on labelled regions of the scan: it keeps what the model knew (a simulated scan of a real duplex "
            "steel's map, 4 grains of each phase: 0.999 of the map right with it, 0.864 without, 0.985 for the "
            "model alone; bench/RESULTS.md). Not from ImageNet weights or other saved models.",
            key=f"{FORM_KEY}rehearse",
        )
        more = more_settings()
        name = name_input("Model name prefix", "model")
        submitted = st.form_submit_button("Start training", type="primary", disabled=read_only)
    if submitted:
        try:
            given = [s for s in re.split(r"[,\s]+", shots_text.strip()) if s]
            if not given or not all(is_whole_number(s) and int(s) >= 1 for s in given):  # "ten", "5.5", "-1", "0"
                raise InputError(f"shots per class {shots_text!r}: give whole numbers from 1, e.g. 10 or 5,10,20")
            shots = list(dict.fromkeys(int(s) for s in given))  # 5,5: once
            offline = next(r for r in registry if r["name"] == backbone)["pretrained_offline"]
            modes = {"ImageNet transfer": [True], "scratch": [False], "both side by side": [True, False]}[mode]
            if not offline and True in modes:
                raise InputError(
                    f"{backbone} has no offline ImageNet weights here: choose scratch or efficientnet_lite0"
                )
            prior = starts.get(start)
            if prior and prior["backbone"] != backbone:
                raise InputError(f"the model {start} is a {prior['backbone']}: choose that backbone to start from it")
            if prior and True in modes and prior.get("channel_mode", "adapt") != more.channel_mode:
                raise InputError(
                    f"the model {start} takes grey patterns with its {prior.get('channel_mode', 'adapt')} channels: "
                    "choose that grey input under More settings to start from it"
                )
            rehearsal = rehearsal_source(prior, REHEARSAL_CHOICES[rehearse], facts)
            runs = [
                (
                    sweep_run("transfer" if pre else "scratch", k, seed),
                    TrainConfig(
                        backbone=backbone,
                        pretrained=pre,
                        weights_file=prior["path"] if prior and pre else None,
                        shots=k,
                        epochs=int(epochs),
                        input_size=int(input_size),
                        patience=more.patience_for(int(epochs)),
                        views=int(views),
                        rehearsal_per_class=REHEARSAL_PER_CLASS if rehearsal and pre else 0,
                        rehearsal_source=rehearsal or "prior",
                        augment_config=AugmentConfig(
                            resolution=int(binning),
                            rotation=more.rotation,
                            crystal_rotation=more.crystal_rotation,
                            noise_std=more.noise,
                        ),
                        channel_mode=more.channel_mode,
                        seed=more.first_seed + seed,
                        lr=more.lr,
                        batch_size=more.batch_size,
                        frozen_warmup_epochs=more.frozen_epochs if pre else 0,
                        unknown_threshold=more.unknown_threshold,
                    ),
                )
                for k in shots
                for pre in modes
                for seed in range(int(repeats))
            ]
            # a run whose model exists would be kept as it is (so that a restarted job resumes): say so now
            names = [validate_name(f"{name}-{label}") for label, _ in runs]
            taken = [model for model in names if (default_store() / model).exists()]
            if taken:
                raise InputError(f"a model named {taken[0]} exists in the store; choose another name prefix")
            labelled = open_patterns(path)
            if labelled.labelled:  # says now, not when the job starts, that the dataset cannot give them
                check_shots(labelled.labels, labelled.split, labelled.classes, max(shots), active_dataset_name())
            params = {
                "dataset_path": str(path),
                "runs": [[label, config.to_dict()] for label, config in runs],
                "name": name,
            }
            job = start_job(
                "train", f"{name}: {counted(len(runs), 'run')}", lambda ctx: train_runs_job(ctx, params), params
            )
            if job:
                st.session_state.train_job = job_id = job
                renew_default_name("model")
        except (ValueError, EbsdError) as exc:  # a ValueError of its own is unexpected, and said so
            show_error(exc)


def _tested(run: dict, generator: str | None) -> str:
    """What a finished run scored, its test sets named as the Results page names them (``generator``: what made its
    dataset)."""
    accuracy = run.get("test_accuracy")
    if accuracy is None:  # the shots and the validation took every pattern of the training materials
        return "no pattern was left to test on (add patterns or choose fewer shots to get a test accuracy)"
    scores = [f"{accuracy:.3f} on {test_set(generator)[0].lower()}"]
    if run.get("holdout_accuracy") is not None:
        scores.append(f"{run['holdout_accuracy']:.3f} on held-out materials")
    if "epochs_to_95" in run:  # how fast it learnt: the paper's other measure of transfer against scratch
        reached = run["epochs_to_95"]
        scores.append(
            f"{VALIDATION_TARGET:.0%} validation accuracy " + (f"at epoch {reached}" if reached else "not reached")
        )
    return ", ".join(scores)


def _made_by(runs: list[dict]) -> str | None:
    """What made the dataset a finished job's models were trained on (one for all its runs), from the first one's
    card (None once it is deleted)."""
    with contextlib.suppress(EbsdError, OSError, KeyError, IndexError):
        return read_card(runs[0]["model"]).training.get("dataset")
    return None


def training_curves(state) -> None:
    histories: dict[str, list] = {}
    for event in state.events:
        histories.setdefault(event.get("run", "model"), []).append(event)
    if histories:
        c1, c2 = st.columns(2)
        c1.plotly_chart(curves_figure(histories, "loss"), key=f"loss-{len(state.events)}")
        c2.plotly_chart(curves_figure(histories, "accuracy"), key=f"acc-{len(state.events)}")


def job_panel(job_id: str) -> None:
    state = manager.get(job_id)
    if state is None:  # forgotten with its idle session's files (ebsd_core.housekeeping)
        st.session_state.pop("train_job", None)
        st.info(
            "That job's record is gone: its session was idle for a day, and its files and demo models were cleared. "
            "Models trained on this page stay in the store."
        )
        return
    if state.owner != session_id():
        st.warning("This job is not known to this session.")
        return
    st.subheader(state.title)
    show_unfinished_job(job_id, state, "cancel", state.message or state.status, lambda: training_curves(state))
    if state.status in FINISHED:
        if state.status == "done":
            runs = state.result.get("runs", [state.result])
            st.success(
                f"Finished: the {len(runs)} models are in the store."
                if len(runs) > 1
                else "Finished: the model is in the store."
            )
            made_by = _made_by(runs)
            for run in runs:
                scores = _tested(run, made_by)
                st.write(f"**{run.get('run', run.get('model_name'))}**: {scores}; trained in {run.get('seconds')} s")
            if made_by == "map regions":
                st.info(
                    "Its test patterns are other points of the labelled regions, mostly of the same grains: map the "
                    "scan with it on **Phase map** to see how it does.",
                    icon=":material/map:",
                )
            if st.session_state.get("applied_job") != job_id:
                st.session_state.applied_job = job_id
                apply_job_model(state.result.get("model_name"), state.finished)
                # the Results page overlays the curves of a job's models on each other (transfer vs scratch)
                st.session_state.job_models = [Path(run["model"]).name for run in runs if run.get("model")]
                if state.result.get("dataset"):
                    apply_job_dataset(Path(state.result["dataset"]), "demo", state.finished)
                st.rerun(scope="app")  # the form above and the sidebar show the new dataset and model
            st.page_link("pages/results.py", label="See the results", icon=":material/insights:")
        else:
            st.error(for_the_user(f"{state.status}: {state.error or state.message}"))
            function = run_again(state)
            if function is not None and start_again_button("restart") and (again := restart_job(job_id, function)):
                st.session_state.train_job = again
                st.rerun()
        return


def run_again(state: JobState) -> JobFunction | None:
    """What starts a failed or cancelled job of this page again, from its saved parameters: a training, or the
    Home demo (a server restarted under it said "start it again", and only Home had a button for it); None for
    others."""
    params = state.params
    if state.kind == "train" and params:
        return lambda ctx: train_runs_job(ctx, params)
    if state.kind == "demo" and "epochs" in params:
        folder, epochs = session_dir(), int(params["epochs"])
        return lambda ctx: demo_train_job(ctx, folder, epochs)
    return None


if path is not None:
    job_id = prior_form(path) or job_id
    if job_id != st.session_state.get("train_job"):
        st.session_state.train_job = job_id

if job_id:
    show_job(job_id, job_panel)
