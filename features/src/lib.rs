//! Featurizer and bundle format shared by serving and training.
