"""EnsembleDetector: several autoencoder detectors, their standardized scores averaged."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context, clone
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _data
from ._base import BaseAutoencoderDetector, _state
from ._calibration import CalibrationMixin
from .thresholds import (
    MAD_TO_SIGMA,
    contamination_offset,
    labels_from_decision,
    training_threshold,
)


def default_estimators():
    """The members of ``EnsembleDetector()``: chosen by ``benchmarks/ensemble_selection.py``
    (see the README's Benchmarks section)."""
    from .ae import AEDetector
    from .vae import VAEDetector

    return [("ae", AEDetector(early_stopping="entropy")),
            ("vae", VAEDetector(latent_dim=2)),
            ("vae_minmax", VAEDetector(scaling="minmax"))]


def standardization(scores):
    """``(center, spread)`` of training scores: their median and MAD (x 1.4826), the
    standard deviation when the MAD is 0, and 1 when both are; over the finite scores
    (a member scores rows it left out of training, such as extreme rows, as -inf)."""
    scores = scores[np.isfinite(scores)]
    center = float(np.median(scores))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(scores - center)))
    if not spread > 0:
        spread = float(np.std(scores))
    return center, (spread if spread > 0 else 1.0)


class EnsembleDetector(CalibrationMixin, OutlierMixin, BaseEstimator):
    """Outlier detector averaging the standardized scores of several detectors.

    Each member (an :class:`AEDetector`, :class:`VAEDetector` or :class:`AAEDetector`)
    is fitted on the same rows; its scores are standardized by the median and the
    median absolute deviation (MAD, x 1.4826) of its own training scores, so every
    member counts alike whatever its units (squared error, nats of the ELBO), and
    ``score_samples`` is their mean: higher = more normal. Members that fail on
    different datasets make an ensemble that fails on fewer: the default members are
    an autoencoder stopped by the entropy of its training scores, a VAE with a
    two-dimensional code and a VAE on min-max scaled features, chosen without looking
    at the datasets they are reported on (``benchmarks/ensemble_selection.py``).

    Parameters
    ----------
    estimators : list of (str, detector) tuples, default=None
        The members, each with a distinct name (as in scikit-learn's
        ``VotingClassifier``); they are cloned, never fitted in place. ``None``: the
        three default members above (see :func:`default_estimators`).
    contamination : 'auto' or float in (0, 0.5], default='auto'
        Sets ``offset_`` from the ensemble's training scores, as for the members:
        that share of the training rows is flagged, or with ``'auto'`` the rows
        more than three robust standard deviations (1.4826 MAD) below the median
        (the members' ``'auto'`` rule, :func:`aedetect.thresholds.auto_offset`).
    device : str, torch.device or None, default=None
        ``None``: each member keeps its own ``device`` (``'auto'`` for the defaults:
        cuda, then mps, then cpu). Otherwise every member is fitted there.
    random_state : int, RandomState instance or None, default=None
        ``None``: each member keeps its own ``random_state``. An int: every member is
        fitted with that seed (same seed and data -> identical scores). A
        ``RandomState``: one seed is drawn from it per member.

    Attributes
    ----------
    estimators_ : list of detectors
        The fitted members, in the order of ``estimators``.
    named_estimators_ : Bunch
        The fitted members by name.
    centers_, scales_ : ndarray of shape (n_estimators,)
        Median and MAD (x 1.4826) of each member's training scores.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    threshold_ : dict
        How ``offset_`` was set: by ``contamination`` in ``fit``, or by ``calibrate``.
    calibration_scores_ : ndarray or None
        The sorted scores of ``calibrate``'s held-out normal rows.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names seen in ``fit``, when they were all strings.
    input_shape_ : tuple
        The shape of one sample, as the members see it.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from aedetect import AEDetector, EnsembleDetector, VAEDetector
    >>> X = load_breast_cancer().data
    >>> ensemble = EnsembleDetector([("ae", AEDetector(max_iter=20)),
    ...                              ("vae", VAEDetector(max_iter=20))], random_state=0)
    >>> ensemble.fit(X).predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        "estimators": [list, None],
        "contamination": [StrOptions({"auto"}), Interval(Real, 0, 0.5, closed="right")],
        "device": [str, torch.device, None],
        "random_state": ["random_state"],
    }

    def __init__(self, estimators=None, *, contamination="auto", device=None,
                 random_state=None):
        self.estimators = estimators
        self.contamination = contamination
        self.device = device
        self.random_state = random_state

    # ------------------------------------------------------------- parameters
    def _named(self):
        """The ``(name, detector)`` items of ``estimators`` (none while it is ``None``
        or malformed: ``fit`` says what is wrong with it)."""
        if not isinstance(self.estimators, list):
            return []
        return [item for item in self.estimators
                if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and hasattr(item[1], "get_params")]

    def get_params(self, deep=True):
        """The parameters; with ``deep``, also each member by name and its parameters
        as ``<name>__<parameter>`` (as ``VotingClassifier``), for ``GridSearchCV``."""
        params = super().get_params(deep=False)
        if deep:
            for name, detector in self._named():
                params[name] = detector
                params.update({f"{name}__{key}": value
                               for key, value in detector.get_params(deep=True).items()})
        return params

    def set_params(self, **params):
        """Set parameters; ``<name>=detector`` replaces a member, ``<name>__<parameter>``
        sets one of its parameters.

        Returns
        -------
        self : object
        """
        if "estimators" in params:
            self.estimators = params.pop("estimators")
        names = [name for name, _ in self._named()]
        replaced = {name: params.pop(name) for name in list(params) if name in names}
        if replaced:
            self.estimators = [(name, replaced.get(name, detector))
                               for name, detector in self._named()]
        return super().set_params(**params) if params else self

    # ---------------------------------------------------------------- fitting
    def _members(self):
        """``[(name, unfitted clone)]``, checked, with ``random_state`` applied."""
        members = default_estimators() if self.estimators is None else self.estimators
        if not members:
            raise ValueError("EnsembleDetector needs at least one member in estimators; got "
                             "an empty list. Pass [(name, detector), ...] or None for the "
                             "default members.")
        names = []
        for item in members:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError(f"estimators must be a list of (name, detector) tuples; got "
                                 f"{item!r:.80}.")
            if not isinstance(item[1], BaseAutoencoderDetector):
                raise TypeError(
                    f"Member {item[0]!r} is a {type(item[1]).__name__}; EnsembleDetector "
                    "averages aedetect detectors (AEDetector, VAEDetector, AAEDetector). "
                    "Wrap other detectors' scores yourself.")
            names.append(item[0])
        reserved = set(self._parameter_constraints)
        if len(set(names)) != len(names) or any(
                not name or "__" in name or name in reserved for name in names):
            raise ValueError(f"The members' names must be distinct, non-empty, free of '__' "
                             f"and not one of {sorted(reserved)}; got {names}.")
        rng = self.random_state
        if rng is not None and not isinstance(rng, Integral):
            rng = check_random_state(rng)
        cloned = []
        for name, detector in members:
            detector = clone(detector)
            if self.device is not None:
                detector.set_params(device=self.device)
            if isinstance(rng, Integral):
                detector.set_params(random_state=int(rng))
            elif rng is not None:
                detector.set_params(random_state=int(rng.randint(np.iinfo(np.int32).max)))
            cloned.append((name, detector))
        return cloned

    def fit(self, X, y=None):
        """Fit every member on ``X``, standardize their scores and set ``offset_``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Training data, assumed mostly normal.
        y : array-like of shape (n_samples,), default=None
            Passed to each member's ``fit`` (used by ``AAEDetector(conditional=True)``).

        Returns
        -------
        self : object
        """
        self._fit_and_score(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=False)
    def _fit_and_score(self, X, y):
        members = self._members()
        fitted = object.__new__(type(self))
        fitted.__dict__.update(_state(self, fitted=False))
        _data.validate_samples(fitted, X, reset=True)  # n_features_in_, feature_names_in_
        centers, scales, standardized = [], [], []
        for _, detector in members:
            scores = detector._fit_and_score(X, y)
            center, scale = standardization(scores)
            centers.append(center)
            scales.append(scale)
            standardized.append((scores - center) / scale)
        shapes = {detector.input_shape_ for _, detector in members}
        if len(shapes) != 1:
            raise ValueError(f"The members see samples of different shapes {sorted(shapes)}; "
                             "give them the same image_shape / architecture input.")
        scores = np.mean(standardized, axis=0)
        fitted.__dict__.update(
            estimators_=[detector for _, detector in members],
            named_estimators_=Bunch(**dict(members)),
            centers_=np.asarray(centers), scales_=np.asarray(scales),
            input_shape_=shapes.pop(),
            offset_=contamination_offset(scores[np.isfinite(scores)], self.contamination),
            threshold_=training_threshold(self.contamination, np.isfinite(scores).sum()),
            calibration_scores_=None)
        # one step: a failed fit above leaves the previous fit in place
        self.__dict__ = {**_state(self, fitted=False), **_state(fitted, fitted=True)}
        return scores

    # ---------------------------------------------------------------- scoring
    def _member_columns(self, rows):
        """Each member's standardized score of validated rows, one column per member."""
        return np.column_stack([(detector._score_rows(rows) - center) / scale
                                for detector, center, scale
                                in zip(self.estimators_, self.centers_, self.scales_)])

    def _score_rows(self, rows):
        """The ensemble score of validated rows (``CalibrationMixin`` uses it)."""
        return self._member_columns(rows).mean(axis=1)

    def _check_score_type(self, method):
        """The members keep the score types they were fitted with (``CalibrationMixin``)."""

    def member_scores(self, X):
        """Each member's standardized score of each row: the columns ``score_samples``
        averages, to see which member flags a row.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images

        Returns
        -------
        scores : ndarray of shape (n_samples, n_estimators), dtype float64
        """
        check_is_fitted(self)
        rows = _data.validate_samples(self, X, reset=False)[0]
        return self._member_columns(rows)

    def score_samples(self, X):
        """Normality score of each row: the mean of the members' standardized scores;
        higher means more normal.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
        """
        check_is_fitted(self)
        return self._score_rows(_data.validate_samples(self, X, reset=False)[0])

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images

        Returns
        -------
        decision : ndarray of shape (n_samples,), dtype float64
        """
        check_is_fitted(self)
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Label each row: +1 for inliers, -1 for outliers.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images

        Returns
        -------
        labels : ndarray of shape (n_samples,), values in {-1, +1}
        """
        return labels_from_decision(self.decision_function(X))

    def fit_predict(self, X, y=None):
        """Fit on ``X``, then label its rows (the training scores that set ``offset_``).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
        y : array-like, default=None
            Passed to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), values in {-1, +1}
        """
        return labels_from_decision(self._fit_and_score(X, y) - self.offset_)
