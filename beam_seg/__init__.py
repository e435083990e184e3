"""beam_seg: DeepLab semantic segmentation of images and videos as an Apache Beam job."""

__version__ = "0.1.0"
