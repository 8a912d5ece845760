diagnose -f testdata/cli/in/deploymentconfig.yaml
