"""Chapter 03 — training with ArcFace on MNIST: the training step, the first loss, CosFace's room at 2-D, own angles,
and a rotated test set (predict, then measure)."""

from __future__ import annotations

import math

import torch
from torch import nn

from arclib import data, losses, metrics, pretrained
from arclib.exercises import Wrong, exercise, expect_number, expect_prediction


def _tiny_setup(seed: int = 0):
    """A two-layer embedding network, an ArcFace loss with its centres, SGD over both, and four small batches."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    loss_fn = losses.make("arcface", num_classes=4, embedding_dim=3, s=8, m=0.3)
    opt = torch.optim.SGD([*model.parameters(), *loss_fn.parameters()], lr=0.1, momentum=0.9)
    batches = [(torch.randn(5, 6), torch.randint(0, 4, (5,))) for _ in range(4)]
    return model, loss_fn, opt, batches


def _reference_step(model, loss_fn, opt, x, y) -> float:
    value = loss_fn(model(x), y)
    opt.zero_grad()
    value.backward()
    opt.step()
    return value.item()


def _parameters(model, loss_fn) -> list[torch.Tensor]:
    return [p.detach().clone() for p in (*model.parameters(), *loss_fn.parameters())]


@exercise("03.1", "write the training step")
def training_step(step) -> str:
    if not callable(step):
        raise Wrong(f"your answer should be a function training_step(model, loss_fn, opt, x, y); you gave "
                    f"{type(step).__name__}")
    reference = _tiny_setup()
    mine = _tiny_setup()
    for k, ((x, y), (x2, y2)) in enumerate(zip(reference[3], mine[3], strict=True)):
        before = _parameters(*mine[:2])
        expected = _reference_step(*reference[:3], x, y)
        got = step(*mine[:3], x2, y2)
        if isinstance(got, torch.Tensor):
            if got.numel() != 1:
                raise Wrong(f"step {k + 1} returned a tensor of shape {tuple(got.shape)}; return the batch's loss, "
                            f"one number")
            got = got.item()
        if not isinstance(got, (int, float)):
            raise Wrong(f"step {k + 1} returned {type(got).__name__}; return the batch's loss as a number",
                        "`.item()` turns a one-element tensor into a Python float")
        after = _parameters(*mine[:2])
        if all(torch.equal(a, b) for a, b in zip(before, after, strict=True)):
            raise Wrong(f"after step {k + 1} no weight has changed",
                        "computing the gradients is not yet learning: the optimiser must apply them")
        if not math.isclose(got, expected, rel_tol=1e-5, abs_tol=1e-6):
            raise Wrong(f"step {k + 1} returned the loss {got:.6g}, not the loss of the batch before the update",
                        "return the value the gradients were computed from, taken before the weights change")
        for a, b in zip(_parameters(*reference[:2]), after, strict=True):
            if not torch.allclose(a, b, rtol=1e-5, atol=1e-6):
                if k == 0:
                    raise Wrong("after the first step the weights differ from a correct step",
                                "the order matters: forward, loss, clear the old gradients, backward, update")
                raise Wrong(f"the first step is right, but after step {k + 1} the weights differ",
                            "a step that is right once and wrong later keeps something from the step before: "
                            "what does backward() do to gradients that are already there?")
    return "four steps, same loss values and same weights as a correct step: this is the loop inside fit"


@exercise("03.2", "the loss of the first step")
def first_loss(answer) -> str:
    # ten classes with equal logits: cross-entropy of a uniform softmax, measured through arclib's NormFace
    uniform = losses.make("normface", s=16)(torch.zeros(1, 10), torch.tensor([0])).item()
    expect_number(answer, uniform, what="the first loss", digits=2,
                  mistakes={"that logarithm has base 10; cross-entropy uses the natural logarithm": math.log10(10),
                            "that logarithm has base 2; cross-entropy uses the natural logarithm": math.log2(10),
                            "that is the probability of the target, not the loss": 0.1},
                  hint="equal logits give every class the same probability; the loss is −log of the target's")
    return "ln C: a first step far from it means a bug (or logits that are not equal at the start)"


@exercise("03.3", "how much CosFace margin fits at 2-D")
def cosface_room(answer) -> str:
    neighbour = math.radians(36.0)  # ten centres spread evenly on a circle
    # the largest m for which an image on its own centre still out-scores a neighbouring centre, through arclib
    cos_neighbour = math.cos(neighbour)
    largest = losses.make("cosface", s=1, m=0.0).target_logit(torch.tensor([0.0])).item() - cos_neighbour
    expect_number(answer, largest, what="the largest m", digits=2,
                  mistakes={"cos was taken of 36 radians, not 36 degrees": 1 - math.cos(36.0),
                            "that is the angle 36° in radians: CosFace's margin is in cosine units": neighbour,
                            "that is cos 36°; the margin is what separates it from the target's cosine": cos_neighbour},
                  hint="on its centre the image's target logit is s(cos 0 − m); the neighbour's logit is s·cos 36°")
    return "m must stay below about 0.19 at 2-D: the chapter's 0.1 leaves room, 0.2 would not"


@exercise("03.4", "the mean angle to the own centre")
def own_angle(answer) -> str:
    emb, labels, centres = own_angle_data()
    expected = metrics.angle_stats(emb, labels, centres)["intra"]
    cos_all = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(centres, dim=1).T
    nearest = torch.rad2deg(torch.acos(cos_all.max(1).values.clamp(-1, 1))).mean().item()
    unnormalised = torch.rad2deg(torch.acos((emb @ centres.T).gather(1, labels[:, None]).clamp(-1, 1))).mean().item()
    expect_number(answer, expected, what="the mean angle", digits=3,
                  mistakes={"that is in radians; the chapter's tables are in degrees": math.radians(expected),
                            "that is the angle to the nearest centre, whichever class it belongs to": nearest,
                            "normalise both the embeddings and the centres before the dot product": unnormalised},
                  hint="for each image, the angle to the row of the centres given by its label, then the mean")
    return "the 'own' column of metrics.comparison"


def own_angle_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The small 2-D example of exercise 03.4: eight embeddings, their labels and three class centres."""
    emb = torch.tensor([[2.0, 0.3], [1.5, -0.4], [0.2, 1.8], [-0.5, 2.5], [-1.9, -0.2], [-2.2, 0.9],
                        [0.4, -1.0], [1.2, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    centres = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-1.0, 0.1]])
    return emb, labels, centres


ROTATION_DEGREES = 30


def rotated_accuracy(name: str, degrees: float = ROTATION_DEGREES) -> float:
    """Test accuracy (%) of the shipped model ``name`` on the 10,000 MNIST test digits turned by ``degrees``
    (counter-clockwise, the corners filled with the background's value)."""
    import torchvision.transforms.functional as TF

    model, loss, _ = pretrained.load(name)
    test = data.load("mnist", train=False)
    background = float(test.images.min())  # a black pixel, normalised
    with torch.no_grad():
        embeddings = torch.cat([model(TF.rotate(batch, degrees, fill=background))
                                for batch in test.images.split(1000)])
    return 100 * metrics.accuracy(loss, embeddings, test.targets)


@exercise("03.5", "a rotated test set (predict, then measure)")
def rotated_digits(answer) -> str:
    choices = {"arcface": "ArcFace keeps more than a point more of its accuracy",
               "softmax": "softmax keeps more than a point more",
               "same": "the two within a point of each other"}
    arcface, softmax, verdict = expect_prediction(
        answer, choices, lambda: (rotated_accuracy("mnist128-arcface"), rotated_accuracy("mnist128-softmax")),
        lambda arc, soft: "same" if abs(arc - soft) <= 1 else ("arcface" if arc > soft else "softmax"),
        digits=3, what="ArcFace's accuracy on the rotated digits (in %)",
        hint="TF.rotate(test.images, 30, fill=test.images.min().item()), then the model, then metrics.accuracy, times 100")
    note = (f"ArcFace {arcface:.1f} %, softmax {softmax:.1f} % at {ROTATION_DEGREES}° — {verdict} (one network per "
            "loss, same recipe and seed; ArcFace adds the normalisation, s = 30 and m = 0.5).")
    if abs(arcface - softmax) <= 1:
        note += (" The margin shapes the classes on the images the network was trained on; a turned digit is a "
                 "different image, and both losses lose alike")
    return note
