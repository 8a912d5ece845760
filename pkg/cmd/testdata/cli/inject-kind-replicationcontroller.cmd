inject -f testdata/cli/in/replicationcontroller.yaml
