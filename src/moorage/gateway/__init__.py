"""The gateway: the data plane between users and their replicas."""
