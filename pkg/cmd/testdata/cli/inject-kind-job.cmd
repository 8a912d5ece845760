inject -f testdata/cli/in/job.yaml
