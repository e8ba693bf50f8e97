"""numpydoc text shared by every detector's docstring."""


#: numpydoc text of the parameters every detector shares; each detector's docstring
#: includes it in place of ``{shared_parameters}``.
SHARED_PARAMETERS_DOC = """\
    hidden_layer_sizes : tuple of int, default=None
        Widths of the encoder's hidden layers; the decoder mirrors them. ``None``
        uses ``(clip(4 * n_features, 16, 256), clip(2 * n_features, 8, 128))``. With
        ``architecture='conv'``: dense layers between the last feature map and the
        code, ``None`` meaning none (one linear map).

    latent_dim : int, default=None
        Size of the code. ``None`` uses ``clip(n_features // 4, 2, 32)``.

    activation : {'relu', 'leaky_relu', 'elu', 'gelu', 'tanh', 'selu'}, default='relu'
        Activation of the hidden layers.

    dropout : float in [0, 1) or 'auto', default='auto'
        Dropout after each hidden activation, during training only. ``'auto'`` is
        0.2 for ``architecture='dense'``, where with ``batch_norm`` it keeps the
        network from memorizing rare rows, the outliers among them (see
        ``benchmarks/README.md``), and 0 for ``'conv'``, where it blurs the
        reconstructions (see the README's image section for the figures).

    batch_norm : bool or 'auto', default='auto'
        Batch normalization in the hidden layers: ``'auto'`` means on for
        ``architecture='dense'`` and off for ``'conv'``, for the same reasons as
        ``dropout``. Scoring uses the running statistics, so a row scores the same
        alone or in a batch.

    architecture : {'dense', 'conv'}, default='dense'
        Network family (see :mod:`aedetect.networks`). ``'conv'`` needs images:
        convolution stages (3x3 convolution, activation, 2x2 max-pooling) then a
        dense bottleneck, and a mirrored decoder (upsampling, 3x3 convolution).

    conv_channels : tuple of int, default=(32, 64)
        Channels of the convolution stages when ``architecture='conv'``, one stage
        per entry; each stage halves the height and width (rounding up).

    image_shape : tuple of int, default=None
        ``(height, width)`` or ``(channels, height, width)``: rows of ``X`` are
        images flattened in C order (one side may be ``-1``, inferred as in
        ``numpy.reshape``). Not needed when ``X`` is an image array of shape
        ``(n_samples, height, width)`` or ``(n_samples, channels, height, width)``.

    scaling : {'auto', 'robust', 'standard', 'minmax'} or None, default='auto'
        Per-feature scaling learned in ``fit`` and applied before the network.
        ``'robust'``: minus the median, divided by the interquartile range / 1.349
        (the standard deviation where the quartiles coincide), so that outliers
        in the training data neither shift nor shrink the scale of the normal
        rows; ``'standard'``: zero mean, unit variance; ``'minmax'``: [0, 1].
        ``'auto'`` is ``'robust'`` for the dense architecture, and for ``'conv'``
        one min-max range over all pixels, which maps the training images to
        [0, 1] without changing their structure. Scores are computed in the
        scaled space, so every feature counts equally whatever its unit.

    noise : float, default=None
        Denoising training: the strength of the corruption of the inputs during
        training (the standard deviation of Gaussian noise in scaled units, or the
        probability of masking a value). The target stays the clean input and the
        corrupted input is clipped to the training data's range (per feature, or
        over all pixels for images scaled alike everywhere, as with ``'auto'`` for
        ``'conv'``). ``None`` trains a plain autoencoder.

    noise_type : {'gaussian', 'mask'}, default='gaussian'
        Kind of corruption used when ``noise`` is set.

    batch_size : int, default=256
        Rows per mini-batch.

    learning_rate_init : float, default=1e-3
        Adam's learning rate.

    weight_decay : float, default=0.0
        Adam's L2 penalty.

    trim_fraction : float in [0, 0.5), default=0.1
        Robust training: in each mini-batch, this share of the rows with the
        largest loss is left out of the gradient step (a trimmed mean), so that
        outliers mixed into the training data are not learned. ``0`` trains on
        the plain mean. The per-epoch ``loss`` in ``history_`` is the trimmed one.

    max_iter : int, default=100
        Maximum number of epochs.

    early_stopping : bool or 'entropy', default=False
        ``True``: hold out ``validation_fraction`` of the rows, stop when their loss
        (minus the mean score) stops improving and restore the best weights.
        ``'entropy'`` (EntropyStop, Huang et al., KDD 2024): no rows held out;
        after every epoch the per-row loss of the training rows (at most 10,000,
        evenly spaced, and 256 MiB) is read as a distribution over them; training
        stops when its entropy stops falling and the weights of the lowest-entropy
        epoch are restored (the normal rows fitted, the outliers not yet). No label
        is used.
        ``False``: training stops when the training loss stops improving.

    validation_fraction : float in (0, 1), default=0.1
        Share of rows held out when ``early_stopping=True``.

    n_iter_no_change : int, default=10
        Epochs without an improvement of at least ``tol`` before stopping.

    tol : float, default=1e-4
        Minimum decrease of the watched loss that counts as an improvement.

    contamination : 'auto' or float in (0, 0.5], default='auto'
        Sets ``offset_``. A float: that share of the training rows is flagged.
        ``'auto'``: rows scoring below ``median - 3 * 1.4826 * MAD`` of the
        training scores are flagged (see :mod:`aedetect.thresholds`).

    device : str or torch.device, default='auto'
        Where to train and score. ``'auto'`` picks CUDA, then MPS, then the CPU,
        and stores the choice in ``device_``.

    training_precision : {'float32', 'bfloat16'}, default='float32'
        ``'bfloat16'``: mixed precision, the training steps run under
        ``torch.autocast`` with bfloat16 (faster on GPUs with bfloat16 units; the
        weights, the optimizer and the validation loss stay float32). Scoring and
        calibration always compute in float32.

    torch_compile : bool, default=False
        Compile each training step with ``torch.compile``: forward, loss, backward
        and the Adam updates of every phase become one graph (gradients from
        ``torch.func``). On small networks, where a step costs the overhead of its
        many small kernels more than arithmetic, training runs several times as
        fast per step (on one CPU thread, PyOD's default AutoEncoder network about
        3x at batch 32 and 2x at 256; ``benchmarks/results/step_overhead.md``). The first
        fit of a network and batch size in a process spends seconds compiling (more
        while the compiler's on-disk cache is empty); later fits of the same network
        and batch size reuse the graph. The draws (dropout masks, the VAE's noise)
        still come from ``random_state``, in another order: a compiled fit is
        reproducible and trains like an uncompiled one, not number for number.
        Needs torch 2.9 or later and, on the CPU, a C++ compiler; not with
        data-parallel training.

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialization, shuffling, the validation split and noise,
        locally (global seeds are never touched). Same seed and data give
        identical scores on the CPU.

    verbose : int, default=0
        Show a progress bar of the epochs with the losses.

    callbacks : list of aedetect.Callback, default=None
        Called at every hook of the fit (see :class:`aedetect.Callback`): around the
        fit (``on_fit_begin``, ``on_fit_end``), the training loop, each epoch and each
        batch. Early stopping, the progress bar and MLflow logging use the same
        protocol."""

#: numpydoc text of the fitted attributes every detector shares.
SHARED_ATTRIBUTES_DOC = """\
    offset_ : float
        Threshold on ``score_samples``: ``decision_function = score_samples - offset_``.

    score_type_ : str
        The ``score_type`` that ``offset_`` was set for; ``predict`` and
        ``decision_function`` raise when ``score_type`` has been changed since.

    threshold_ : dict
        How ``offset_`` was set, and on how many rows: ``{'method': 'auto',
        'n_rows': n}`` or ``{'method': 'contamination', 'contamination': c,
        'n_rows': n}`` in ``fit`` (training rows); ``{'method': 'fpr', 'fpr': f,
        'n_rows': n}`` after ``calibrate`` (held-out normal rows).

    calibration_scores_ : ndarray of shape (n_calibration,)
        Sorted scores of the rows passed to ``calibrate``, against which
        ``p_values`` and ``predict_fdr`` measure new rows. Only after ``calibrate``;
        ``fit`` removes it.

    n_features_in_ : int
        Number of values per sample seen during ``fit``: the columns of 2-D ``X``,
        or ``channels * height * width`` for images (which may then also be
        passed as rows of that length).

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names seen during ``fit``, when ``X`` had string column names.

    device_ : torch.device
        The device the model lives on.

    module_ : aedetect.models.DetectorModel
        The trained model, in eval mode: its losses, its score and, as buffers, its
        calibration. With ``center_`` and ``scale_`` it is the whole fitted scorer
        (what saving, the MLflow pyfunc and :mod:`aedetect.export` read).

    center_, scale_ : ndarray of shape (n_features_in_,)
        The learned scaling: the network sees ``(X - center_) / scale_``.

    input_shape_ : tuple of int
        Shape of one sample as the network sees it: ``(n_features,)`` for rows,
        ``(channels, height, width)`` for images.

    hidden_layer_sizes_ : tuple of int
        The resolved hidden widths.

    latent_dim_ : int
        The resolved code size.

    history_ : list of dict
        One record per epoch: every loss component averaged over the rows,
        ``val_loss`` with ``early_stopping=True``, ``score_entropy`` with
        ``early_stopping='entropy'``, and ``time`` in seconds.

    loss_curve_ : list of float
        The ``loss`` of each epoch.

    n_iter_ : int
        Number of epochs run.

    best_loss_ : float
        Best watched loss (validation loss with ``early_stopping=True``, the lowest
        ``score_entropy`` with ``early_stopping='entropy'``).

    best_epoch_ : int
        Epoch of ``best_loss_``; with early stopping its weights are restored."""


#: numpydoc text of ``n_neighbors``, for detectors with latent neighbour scores.
NEIGHBOUR_PARAMETER_DOC = """\
    n_neighbors : int >= 1, default=5
        Number of nearest training codes the latent neighbour score averages the
        distance to (``score_type='latent'`` or ``'combined'``)."""

#: numpydoc text of the fitted attributes of the latent neighbour scores.
NEIGHBOUR_ATTRIBUTES_DOC = """\
    reference_codes_ : ndarray of shape (n_reference, latent_dim_) or None
        With a latent neighbour ``score_type``: the codes of the training rows (at
        most 10,000, drawn with ``random_state``), divided by ``code_scale_``; the
        latent score of a row is minus its mean distance to the ``n_neighbors``
        nearest of them. ``None`` when ``score_type`` does not use them.

    code_scale_ : ndarray of shape (latent_dim_,)
        Robust spread (1.4826 * MAD, the standard deviation where the MAD is 0) of
        each code dimension over the reference rows (set with
        ``reference_codes_``)."""


def fill_docstring(cls):
    """Class decorator: put the shared parameter and attribute docs in ``cls.__doc__``."""
    cls.__doc__ = (cls.__doc__
                   .replace("{shared_parameters}", SHARED_PARAMETERS_DOC)
                   .replace("{shared_attributes}", SHARED_ATTRIBUTES_DOC)
                   .replace("{neighbour_parameter}", NEIGHBOUR_PARAMETER_DOC)
                   .replace("{neighbour_attributes}", NEIGHBOUR_ATTRIBUTES_DOC))
    return cls
