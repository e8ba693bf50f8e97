"""AEDetector: an autoencoder scored by its reconstruction error."""

import torch
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _structure
from ._base import BaseAutoencoderDetector
from ._docs import fill_docstring
from ._params import N_NEIGHBORS, SHARED_PARAMETERS, Parameter, constraints, make_init
from .models import AutoencoderModel
from .models.neighbours import check_n_neighbors


def _numpy(tensor):
    return tensor.detach().to(torch.float64).cpu().numpy()


class LatentNeighbourAttributes:
    """``reference_codes_`` and ``code_scale_`` of detectors with latent neighbour
    scores, read from the model's :class:`~aedetect.models.LatentNeighbours`."""

    @property
    def reference_codes_(self):
        check_is_fitted(self)
        neighbours = self.module_.neighbours
        return _numpy(neighbours.codes) if neighbours.fitted else None

    @property
    def code_scale_(self):
        check_is_fitted(self)
        return _numpy(self.module_.neighbours.scale)


@fill_docstring
class AEDetector(LatentNeighbourAttributes, BaseAutoencoderDetector):
    """Outlier detector scoring rows by how badly an autoencoder reconstructs them.

    The encoder compresses each row to ``latent_dim_`` numbers and the decoder
    rebuilds it; trained on mostly normal data, the network reconstructs normal
    rows well and unusual rows badly. With ``noise`` set it is a denoising
    autoencoder. Training minimizes the mean squared error, trimmed by default:
    the share ``trim_fraction`` of each mini-batch's worst-reconstructed rows is
    left out of the step, so outliers in the training data stay badly reconstructed.

    ``score_samples`` is minus the per-row mean squared reconstruction error over
    the features, in the scaled space (``scaling``): with the default robust
    scaling (median and interquartile range) every feature carries the same weight
    whatever its unit, and no other per-feature weighting is applied (weighting each
    feature by its typical training error was measured and lowered the benchmark
    mean). Higher means more normal.

    ``score_type='latent'`` scores a row by where its code falls instead: minus the
    mean distance to its ``n_neighbors`` nearest training codes (each code dimension
    divided by its spread). A row the network reconstructs well can still have a code
    unlike any training code; on one-class Fashion-MNIST this separates similar
    garments (shirts from T-shirts) better than the reconstruction error.
    ``score_type='combined'`` adds both: minus the sum of the reconstruction error and
    the neighbour distance, each standardized by its median and 1.4826 * MAD over
    the training rows (``combined_center_``, ``combined_scale_``; each training row
    measured against the other training codes).

    Parameters
    ----------
{shared_parameters}

    score_type : {'reconstruction', 'latent', 'combined'}, default='reconstruction'
        What ``score_samples`` returns, per row: minus the mean squared
        reconstruction error, minus the mean distance of the code to its nearest
        training codes, or minus the sum of both standardized (see above). The
        latent scores need the training codes, kept by ``fit`` only for them: a
        detector fitted with ``'reconstruction'`` must be refitted to use them.
        Training (and early stopping) watch the reconstruction error whatever the
        choice. ``offset_`` is set in ``fit`` for this choice: after changing it,
        ``predict`` and ``decision_function`` raise until the detector is refitted.

{neighbour_parameter}

    Attributes
    ----------
{shared_attributes}

{neighbour_attributes}

    combined_center_, combined_scale_ : ndarray of shape (2,)
        Median and 1.4826 * MAD over the training rows of the reconstruction
        error and of the neighbour distance (set with ``reference_codes_``).

    See Also
    --------
    VAEDetector : variational autoencoder scored by the evidence lower bound.
    AAEDetector : adversarial autoencoder scored by reconstruction and prior fit.
    sklearn.ensemble.IsolationForest : the same scoring conventions.

    References
    ----------
    .. [1] Hinton, G. E. and Salakhutdinov, R. R. "Reducing the dimensionality of
       data with neural networks." Science 313 (2006).
    .. [2] Vincent, P. et al. "Extracting and composing robust features with
       denoising autoencoders." ICML (2008).

    Examples
    --------
    >>> import numpy as np
    >>> from aedetect import AEDetector
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 4))
    >>> X[:5] += 6
    >>> detector = AEDetector(max_iter=30, random_state=0).fit(X)
    >>> bool(detector.score_samples(X[:5]).mean() < detector.score_samples(X[5:]).mean())
    True
    >>> detector.predict(X[:5])
    array([-1, -1, -1, -1, -1])
    """

    _own_parameters = (
        Parameter("score_type", "reconstruction",
                  [StrOptions(set(AutoencoderModel.score_types))]),
        N_NEIGHBORS,
    )
    _parameter_constraints = constraints(SHARED_PARAMETERS + _own_parameters)
    __init__ = make_init(SHARED_PARAMETERS + _own_parameters)

    def _check_fit_params(self, n_samples):
        if self.score_type != "reconstruction":
            check_n_neighbors(self.n_neighbors, n_samples, self.score_type)

    def _build_model(self):
        return AutoencoderModel(_structure.encoder(self, self.latent_dim_),
                                _structure.decoder(self, self.latent_dim_), self.latent_dim_,
                                trim_fraction=self.trim_fraction, n_neighbors=self.n_neighbors)

    @property
    def combined_center_(self):
        check_is_fitted(self)
        return _numpy(self.module_.combined_center)

    @property
    def combined_scale_(self):
        check_is_fitted(self)
        return _numpy(self.module_.combined_scale)

