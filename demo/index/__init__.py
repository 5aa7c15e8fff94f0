"""The video index: an on-disk folder of embeddings, searchable text -> video and video -> text.

``format`` is the folder (manifest, files, atomic save, checks on load); ``video_index`` the
:class:`~demo.index.video_index.VideoIndex` that searches it; ``binary`` the sign-code search
and cosine rerank; ``items`` what to index; ``build`` the resumable builder from video files;
``precomputed`` indexes from precomputed embeddings; ``captions`` the caption embeddings
both share. Import from the module that holds a name.
"""
