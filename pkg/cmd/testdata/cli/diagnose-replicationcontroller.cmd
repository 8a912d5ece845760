diagnose -f testdata/cli/in/replicationcontroller.yaml
