inject -f testdata/cli/in/daemonset.yaml
