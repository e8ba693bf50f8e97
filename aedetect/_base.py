"""The scikit-learn outlier-detector contract, shared by every detector.

:class:`BaseAutoencoderDetector` owns ``fit`` / ``score_samples`` /
``decision_function`` / ``predict`` / ``fit_predict`` / ``transform`` and the one
numpy <-> tensor boundary with chunked inference. It never computes a loss: a detector
(``ae.py``, ``vae.py``, ``aae.py``) declares its parameters and builds its model
(:mod:`aedetect.models`) in ``_build_model``; :mod:`aedetect._training` trains it;
:mod:`aedetect._data` validates and scales the data.

A fit works on a fresh copy of the detector (same parameters, no fitted state) and
replaces the fitted state of the detector in one step when it succeeds: a failed fit
loses nothing, and ``score_samples`` from another thread during a fit scores the
previous model.
"""

import copy
from abc import ABCMeta, abstractmethod

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    OutlierMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils.validation import check_is_fitted

from . import _data, _device, _fitting, _structure
from ._params import SHARED_PARAMETERS, constraints
from ._calibration import CalibrationMixin
from .thresholds import labels_from_decision, training_threshold


def _state(estimator, fitted):
    """The fitted attributes (names ending in ``_``) of ``estimator``, or the rest."""
    return {name: value for name, value in vars(estimator).items()
            if (name.endswith("_") and not name.startswith("__")) == fitted}


class BaseAutoencoderDetector(CalibrationMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                              OutlierMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of the autoencoder detectors. Not for direct use.

    See :class:`aedetect.AEDetector` for the parameters shared by every detector.
    """

    _parameter_constraints = constraints(SHARED_PARAMETERS)

    def fit(self, X, y=None):
        """Fit the autoencoder on ``X`` and set the threshold ``offset_``.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Training data, assumed mostly normal: rows, or an image array of shape
            (n_samples, height, width) or (n_samples, channels, height, width).
        y : ignored
            Not used, present for API consistency (see ``AAEDetector(conditional=True)``).

        Returns
        -------
        self : object
            The fitted detector.
        """
        self._fit_and_score(X, y)
        return self

    def partial_fit(self, X, y=None):
        """Train one epoch on ``X``, continuing from the previous call: for data that
        comes in chunks (or streams), one call per chunk.

        The first call (on a detector not fitted yet) sets the structure and the scaling
        statistics from its chunk, as ``fit`` does; later calls keep them, and continue
        from the weights and the optimizer's state (moments, step count) of the call
        before. After ``fit``, or after loading a saved detector, the first
        ``partial_fit`` continues from the fitted weights with a fresh optimizer (its
        state is kept in memory only). Each call recalibrates on its chunk: the score
        statistics, the reference codes of latent scores and ``offset_`` come from the
        last chunk seen. ``early_stopping`` does not apply (there are no validation
        rows); ``history_`` has one epoch per call. A call that fails leaves the
        detector as it was.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            One chunk of training rows (at least two), with the features of the first.
        y : array-like of shape (n_samples,), default=None
            Class labels for ``AAEDetector(conditional=True)`` (the first call must see
            every class); ignored otherwise.

        Returns
        -------
        self : object
        """
        self._fit_and_score(X, y, partial=True)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def _fit_and_score(self, X, y, partial=False):
        """``fit`` (or ``partial_fit``); returns the training scores that set
        ``offset_``."""
        fitted = object.__new__(type(self))
        fitted.__dict__.update(_state(self, fitted=False))
        warm = partial and hasattr(self, "module_")
        if warm:  # one copy: the optimizers keep pointing at the copied weights
            fitted.__dict__.update(copy.deepcopy(_state(self, fitted=True)))
        scores = _fitting.fit_fresh(fitted, X, y, partial=partial, warm=warm)
        fitted.threshold_ = training_threshold(fitted.contamination, np.isfinite(scores).sum())
        # one step: other threads see the old or the new fit, never a mix
        self.__dict__ = {**_state(self, fitted=False), **_state(fitted, fitted=True)}
        return scores

    # ------------------------------------------------- hooks of the detectors
    @abstractmethod
    def _build_model(self):
        """The detector's model (built on the CPU, initial weights drawn from the seeded
        global CPU generator; see :func:`aedetect._device.build_seeded`)."""

    def _validate_target(self, y, n_samples):
        """Targets are ignored unless a detector uses them (``AAEDetector``)."""
        return None

    def _check_fit_params(self, n_samples):
        """Validate the parameters that depend on the number of samples."""

    def _check_rows(self, rows):
        """Validate rows against the fitted scaling before they are scored."""

    @property
    def _scaling_rule(self):
        return _structure.scaling_rule(self)

    def _chunk_rows(self, model=None, copies=None):
        """Rows per inference chunk within the memory budget, cache-sized on the CPU (see
        ``_data.chunk_rows``)."""
        model = self.module_ if model is None else model
        return _data.chunk_rows(self.input_shape_, self.hidden_layer_sizes_, self.latent_dim_,
                                _structure.conv_channels(self),
                                copies=model.inference_copies if copies is None else copies,
                                device=getattr(self, "device_", None))

    def _inference(self, function, rows, chunk=None):
        """``function`` of the scaled tensors of chunks of ``rows``, as float64 numpy."""
        scaling = _data.Scaling(self.center_, self.scale_)

        names = getattr(self, "feature_names_in_", None)

        def load(start, stop):
            return scaling.tensor(rows[start:stop], self.input_shape_, start,
                                  names).to(self.device_)

        return _data.map_chunks(function, rows.shape[0], chunk or self._chunk_rows(), load,
                                host=True)

    def _score_rows(self, rows, exclude_self=False, check=True):
        """Scores of validated, unscaled rows (no validation: ``fit`` reuses it); with
        ``check``, a score that is not finite raises."""
        self._check_rows(rows)
        model, score_type = self.module_, self.score_type
        scores = self._inference(lambda x: model.score(x, score_type, exclude_self), rows)
        return _data.check_scores(scores) if check else scores

    def _decode(self, function, codes):
        """Rows in the user's units from ``function`` of chunks of ``codes`` (a float32
        tensor), within the memory budget, as float64 numpy."""
        chunk = self._chunk_rows(copies=1)
        out = _data.map_chunks(function, codes.shape[0], chunk,
                               lambda start, stop: codes[start:stop].to(self.device_), host=True)
        return _data.Scaling(self.center_, self.scale_).inverse(out.reshape(codes.shape[0], -1))

    def score_samples(self, X):
        """Normality score of each row: higher means more normal.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        scores : ndarray of shape (n_samples,), dtype float64
        """
        check_is_fitted(self)
        return self._score_rows(_data.validate_samples(self, X, reset=False)[0])

    def _offset(self):
        """``offset_``, after checking it was set for the current ``score_type``."""
        check_is_fitted(self)
        if self.score_type != self.score_type_:
            raise ValueError(
                f"offset_ was set in fit for score_type={self.score_type_!r}, but this "
                f"{type(self).__name__} now has score_type={self.score_type!r}. Fit it again "
                "with this score_type to threshold its scores (score_samples works without "
                "a refit), or set score_type back.")
        return self.offset_

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        ``offset_`` holds for the ``score_type`` the detector was fitted with: after
        ``set_params(score_type=...)`` this raises until the detector is fitted again.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        decision : ndarray of shape (n_samples,), dtype float64
        """
        offset = self._offset()
        return self.score_samples(X) - offset

    def predict(self, X):
        """Label each row: +1 for inliers, -1 for outliers (see ``decision_function``).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        labels : ndarray of shape (n_samples,), values in {-1, +1}
        """
        return labels_from_decision(self.decision_function(X))

    def fit_predict(self, X, y=None):
        """Fit on ``X``, then label its samples: +1 for inliers, -1 for outliers.

        The labels come from the training scores ``fit`` set ``offset_`` with: the
        same as ``fit(X).predict(X)``, without scoring ``X`` twice, except with latent
        neighbour scores (``score_type='latent'`` or ``'combined'``), where each
        training sample is measured against the other training codes, so the share
        flagged matches ``contamination`` (``predict`` on the training data counts
        each row's own code among its neighbours and flags fewer).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Training data (see ``fit``).
        y : ignored
            Passed to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_samples,), values in {-1, +1}
        """
        return labels_from_decision(self._fit_and_score(X, y) - self.offset_)

    def transform(self, X):
        """Latent code of each row (the posterior mean for the VAE).

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or images of the shape seen in ``fit`` (one result per image).

        Returns
        -------
        codes : ndarray of shape (n_samples, latent_dim_), dtype float64
        """
        check_is_fitted(self)
        rows = _data.validate_samples(self, X, reset=False)[0]
        return self._inference(self.module_.encode, rows)

    def reconstruct(self, X):
        """The network's reconstruction of each sample, in the units and shape of ``X``.

        With denoising training (``noise``) this is the cleaned input.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or an image array of shape (n_samples, height, width) or
            (n_samples, channels, height, width).

        Returns
        -------
        X_reconstructed : ndarray of the shape of ``X``, dtype float64
        """
        check_is_fitted(self)
        rows, sample_shape = _data.validate_samples(self, X, reset=False)
        scaled = self._inference(self.module_.reconstruct, rows).reshape(rows.shape[0], -1)
        return self._like_input(_data.shaped(
            _data.Scaling(self.center_, self.scale_).inverse(scaled), sample_shape), X)

    def error_map(self, X):
        """Squared reconstruction error of every value (pixel) of every sample.

        The error is measured where the network works, in the scaled space
        ``(X - center_) / scale_`` (for ``architecture='conv'`` the default scaling
        maps the training pixels to [0, 1]): ``(x - reconstruct(x))**2``.
        ``AEDetector.score_samples`` is minus its mean over each sample (with the
        default ``score_type='reconstruction'``); otherwise it shows where a sample
        is reconstructed badly.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features), or images
            Rows, or an image array of shape (n_samples, height, width) or
            (n_samples, channels, height, width).

        Returns
        -------
        errors : ndarray of the shape of ``X``, dtype float64
            For rows with ``image_shape``, reshape with
            ``errors.reshape(-1, *detector.input_shape_)`` to get images.
        """
        check_is_fitted(self)
        rows, sample_shape = _data.validate_samples(self, X, reset=False)
        model = self.module_
        errors = self._inference(lambda x: (model.reconstruct(x) - x).pow(2), rows)
        return self._like_input(_data.shaped(errors.reshape(rows.shape[0], -1), sample_shape),
                                X)

    def _like_input(self, values, X):
        """``values`` (shaped like ``X``) as a DataFrame with ``X``'s index and columns
        when ``X`` is a DataFrame and ``set_output(transform="pandas")`` (or the global
        ``transform_output``) asks for pandas; else as they are."""
        wanted = getattr(self, "_sklearn_output_config", {}).get(
            "transform", sklearn.get_config()["transform_output"])
        if wanted != "pandas" or not isinstance(X, pd.DataFrame):
            return values
        return pd.DataFrame(values, index=X.index, columns=X.columns)

    @property
    def _n_features_out(self):
        """Columns of ``transform``: the code size (named by ``get_feature_names_out``)."""
        return self.latent_dim_

    def __getstate__(self):
        """Pickle with every tensor and module on the CPU, so a GPU fit loads anywhere."""
        # a copy: object.__getstate__ returns the instance's own __dict__, which popping
        # would strip of the optimizer state that its next partial_fit continues from
        state = dict(super().__getstate__())
        state.pop("_optimizers_", None)  # partial_fit's optimizer state: in memory only
        if state.get("device_") is not None and torch.device(state["device_"]).type != "cpu":
            state = {key: _device.to_cpu(value) for key, value in state.items()}
        return state

    def __setstate__(self, state):
        saved = state.get("device_")
        if saved is not None and torch.device(saved).type != "cpu":
            target = _device.load_device(saved)
            state = {key: _device.to_device(value, target) for key, value in state.items()}
            state["device_"] = target
        super().__setstate__(state)

