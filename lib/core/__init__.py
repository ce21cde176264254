"""The ground every stage stands on, importing no stage: profiles and paths (``config``), running a notebook
with a profile (``pipeline``), safe file I/O and clear errors for bad files (``io``), the model registry and
prompt formatting (``models``), the KV-cache mechanics that features, decoding and teacher forcing share
(``kvcache``), the artifacts stages hand each other (``schema``), the seeded bootstrap (``stats``),
progress bars (``progress``) and a profile's work counted for a wall-time estimate (``workload``)."""
