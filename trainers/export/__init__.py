"""Trained models out of the toolkit: bioimage.io model packages and safetensors files (`srtrain export`)."""
