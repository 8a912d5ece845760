inject -f testdata/cli/in/workloads.yaml
