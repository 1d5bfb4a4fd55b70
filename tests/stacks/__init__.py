"""Test stacks other than devtools.devstack.LocalStack (containers), and how one is chosen."""
