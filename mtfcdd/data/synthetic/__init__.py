"""A synthetic data set in the exact Real-IAD layout, or as per-type or MVTec AD folders, for offline runs and tests.

``python -m mtfcdd.data.synthetic --out DIR [--preset tiny|demo] ...`` writes::

    DIR/realiad_256/<category>/OK/S0001/<category>_0001_OK_C1_<timestamp>.jpg           (views C1..C5)
    DIR/realiad_256/<category>/NG/<CODE>/S0001/<category>_0001_NG_<CODE>_C1_<ts>.jpg   + same-stem .png mask
    DIR/realiad_jsons/<category>.json                  standard split (train: OK samples only)
    DIR/realiad_jsons_sv/<category>.json               single view (C1)
    DIR/realiad_jsons_fuiad_<a>/<category>.json        a in 0.0, 0.1, 0.2, 0.4
    DIR/synthetic_realiad.json                         marker: generator version, parameters, counts

With ``layout="nested"`` the JSON folders sit one level lower, in ``DIR/realiad_jsons/`` (as some unpacked zips
have them). The image folder is always called ``realiad_256`` (the folder the pipeline reads); its images are
``size`` px square. audiojack NG files carry the release's double underscore (``audiojack__0001_NG_...``).

``--layout types|mvtec`` (``layout=`` of ``build_synthetic``) writes instead the folders that ``data=folder``
reads, with types that are not Real-IAD's (``--types``: a count N, the first N of crack, dent, rust, stain, streak,
wear, gap, debris, or names; default all 8; each draws one of the eight looks, see ``folders.FOLDER_TYPES``) and
``--defects-per-type`` defective images per type and category, one view per sample, no split files::

    DIR/<category>/good/000.jpg, <type>/000.jpg, masks/<type>/000.png                       (types)
    DIR/<category>/train/good/000.png, test/{good,<type>}/000.png, ground_truth/<type>/000_mask.png   (mvtec)

Every sample is one object (a category-specific shape family: plate with components, disc, ring, hex nut, bar) on
a real texture from scikit-image, seen in 5 views with their own pose, foreshortening, crop and lighting. An NG
sample carries one defect, fixed on the object, visible in a random non-empty subset of its views; the other views
are clean and labelled ``OK`` with ``mask_path: null``. The eight defect types look distinct (pits, bulged or
dented outline, speckled abrasion, thin scratches, chipped edge, missing component, pasted foreign object,
translucent smear). A mask marks exactly the pixels the defect changed (before JPEG coding) and covers
``MASK_AREA`` of the image.

fuiad splits: the train set has ``train_samples`` samples (x5 views) at every alpha; ``round(alpha *
train_samples)`` of them are NG samples (nested across alphas, the types interleaved so that every type appears
as early as possible) and the rest OK samples. The test set (``test_ok_samples`` OK samples and
``test_ng_samples`` per type) is the same for every alpha and disjoint from every train set.

Everything follows from the seed (numpy Generators keyed by seed, category, sample and view; timestamps too):
the same parameters give byte-identical files. A build goes to a temporary sibling folder renamed into place at
the end, so an interrupted build leaves nothing at ``DIR``.

The package, by concern: ``styles`` (how each category looks), ``textures``, ``geometry``, ``scene`` (objects,
views, rendered layers), ``defects`` (the eight looks), ``sample`` (one sample in memory), ``layout`` (names, files,
split JSONs), ``folders`` (the per-type and MVTec AD folders), ``build`` (temporary folder, marker, cache),
``datamodule`` (the Lightning hook), ``__main__`` (CLI).
"""

from mtfcdd.data.synthetic.build import GENERATOR_VERSION, MARKER_NAME, build_synthetic, ensure_synthetic, read_marker
from mtfcdd.data.synthetic.config import PRESETS, SyntheticConfig
from mtfcdd.data.synthetic.folders import FOLDER_LAYOUTS, FOLDER_TYPES
from mtfcdd.data.synthetic.layout import IMAGE_FOLDER, LAYOUTS, image_name, sample_folder
from mtfcdd.data.synthetic.sample import (
    DEFECTIVE_VIEW_WEIGHTS,
    MASK_AREA,
    VIEWS,
    RenderedSample,
    render_sample,
    rendered_views,
)
from mtfcdd.data.synthetic.styles import CATEGORY_STYLES, CategoryStyle, PartSpec
from mtfcdd.data.synthetic.textures import SKIMAGE_FILES, skimage_image

__all__ = [
    "CATEGORY_STYLES",
    "DEFECTIVE_VIEW_WEIGHTS",
    "FOLDER_LAYOUTS",
    "FOLDER_TYPES",
    "GENERATOR_VERSION",
    "IMAGE_FOLDER",
    "LAYOUTS",
    "MARKER_NAME",
    "MASK_AREA",
    "PRESETS",
    "SKIMAGE_FILES",
    "VIEWS",
    "CategoryStyle",
    "PartSpec",
    "RenderedSample",
    "SyntheticConfig",
    "build_synthetic",
    "ensure_synthetic",
    "image_name",
    "read_marker",
    "render_sample",
    "rendered_views",
    "sample_folder",
    "skimage_image",
]
