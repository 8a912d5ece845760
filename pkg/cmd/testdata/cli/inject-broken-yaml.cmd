inject -f testdata/cli/in/broken.yaml
