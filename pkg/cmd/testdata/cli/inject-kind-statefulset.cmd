inject -f testdata/cli/in/statefulset.yaml
