inject -f testdata/cli/in/deploymentconfig.yaml
