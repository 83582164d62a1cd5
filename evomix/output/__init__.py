"""What a run hands back: the result and its file formats, the listening report, stem and DAW exports."""
