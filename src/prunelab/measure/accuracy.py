"""test: accuracy and loss on the test split; finetune: how fine-tuning went.

The test split is used only to report: early stopping and every other training
decision look at the validation split. In the sweep ``test`` is measured in each regime
(``oneshot_`` before fine-tuning, ``finetuned_`` after).
"""

from __future__ import annotations

from prunelab.measure.metric import METRICS, Column, Metric, Subject


def scores_on_test(subject: Subject) -> dict[str, float]:
    from prunelab.train.evaluate import evaluate

    scores = evaluate(subject.model, subject.split, subject.device)
    return {"test_accuracy": scores["accuracy"], "test_loss": scores["loss"]}


def finetune_summary(subject: Subject) -> dict[str, int]:
    return {"finetune_epochs_run": len(subject.fit.history), "finetune_best_epoch": subject.fit.best_epoch}


METRICS.add(
    Metric(
        "test",
        "accuracy and mean cross-entropy loss on the test split",
        (
            Column("test_accuracy", "fraction of test images classified correctly"),
            Column("test_loss", "mean cross-entropy on the test split"),
        ),
        scores_on_test,
    )
)

METRICS.add(
    Metric(
        "finetune",
        "epochs fine-tuning ran and the one whose weights were kept",
        (
            Column("finetune_epochs_run", "epochs run (early stopping may end sooner)"),
            Column("finetune_best_epoch", "1-based epoch with the best validation loss, whose weights were kept"),
        ),
        finetune_summary,
    )
)
