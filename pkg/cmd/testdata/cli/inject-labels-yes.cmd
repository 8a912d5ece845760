inject -f testdata/cli/in/labels-yes.yaml
