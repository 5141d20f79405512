"""Who may do what where: actors and their grants, the region tree, the directory of users and roles."""
