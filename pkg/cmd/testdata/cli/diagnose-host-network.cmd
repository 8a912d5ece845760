diagnose -f testdata/cli/in/diagnose/host-network.yaml
