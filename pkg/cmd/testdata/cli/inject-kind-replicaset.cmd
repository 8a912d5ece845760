inject -f testdata/cli/in/replicaset.yaml
