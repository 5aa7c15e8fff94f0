"""Video files in and out: decode (decord, PyAV fallback), sampling, preprocessing, mp4 writing.

``decode`` opens, probes and reads frames; ``sampling`` picks which frames a model sees;
``preprocess`` turns frames into model input and loads a clip the way CLIP4Clip or X-CLIP
expects; ``mp4`` writes browser-playable files. Import from the module that holds a name.
"""
