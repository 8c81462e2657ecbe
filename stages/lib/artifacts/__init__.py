"""The final-model artifact format both kinds share (reference and transformer): format tag and version, the
manifest's write and verify, file hashes, the backbone fingerprint and the training-stats percentiles. Below
reference, training and serving: each of them imports it, it imports none of them."""
