"""Weights and folders from other tools: SSL-Wearables' published encoder (:mod:`.ssl_wearables`) and Hugging
Face Hub-style model folders (:mod:`.hub`)."""
