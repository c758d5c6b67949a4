"""Captions for world frames, made from their ground truth: what a web-scale CLIP would have
read beside such a photo. They train the demo's tiny CLIP (`quarry pretrain`), which stands
in for the pretrained CLIP a user brings. Pure: a caption is a function of the frame's
labels, its scenario and a generator."""

from __future__ import annotations

import numpy as np

from engine.synth.render import FrameLabel
from engine.synth.scenario import Scenario

CUE_WORDS = {"cone": "traffic cones", "barrel": "orange construction barrels", "sign": "a road work ahead sign",
             "barrier": "striped barriers"}
WORKZONE_TEMPLATES = (
    "{objects} closing a lane on {a_scene} road",
    "a road work zone with {objects}",
    "construction on the {scene} road: {objects}",
    "{objects} along a closed lane",
)
LOOKALIKE_TEMPLATES = {
    "orange_truck": ("an orange truck driving on {a_scene} road", "an orange truck ahead in traffic",
                     "the back of an orange lorry on {a_scene} road"),
    "orange_sign": ("an orange billboard beside the road", "orange advertising boards along {a_scene} road",
                    "an orange sign that is not about road works"),
    "orange_person": ("a person wearing an orange vest beside the road", "people in orange high-visibility vests",
                      "a pedestrian in an orange jacket at the roadside"),
    "glare": ("sun glare in a dashcam image", "bright sunlight flaring into the camera",
              "a lens flare from the sun over the road"),
}
CLEAN_TEMPLATES = ("an empty {scene} road with no construction", "{a_scene} road with ordinary traffic",
                   "driving on a clear {scene} road")
CONDITIONS = {"rain": "in the rain", "fog": "in fog", "night": "at night", "dusk": "at dusk"}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def caption_for(labels: list[FrameLabel], scenario: Scenario, rng: np.random.Generator) -> str:
    """A caption naming what the frame shows: the cue kinds present, or the lookalike, or an
    empty road; with weather and daytime where they are notable."""
    scene = {"scene": scenario.scene, "a_scene": ("an " if scenario.scene[0] in "aeiou" else "a ") + scenario.scene}
    cues = [kind for kind in CUE_WORDS if any(l.is_cue and l.kind == kind for l in labels)]
    lookalikes = [l.kind for l in labels if not l.is_cue]
    if cues:
        text = str(rng.choice(WORKZONE_TEMPLATES)).format(objects=_join([CUE_WORDS[k] for k in cues]), **scene)
    elif lookalikes:
        text = str(rng.choice(LOOKALIKE_TEMPLATES[lookalikes[0]])).format(**scene)
    else:
        text = str(rng.choice(CLEAN_TEMPLATES)).format(**scene)
    conditions = [CONDITIONS[c] for c in (scenario.weather, scenario.daytime) if c in CONDITIONS]
    return " ".join([text, *conditions])
