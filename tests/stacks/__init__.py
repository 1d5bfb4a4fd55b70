"""Test stacks other than bridge.devstack.LocalStack (containers), and how one is chosen."""
