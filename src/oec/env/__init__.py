"""The environment an episode acts in: sandboxes (bubblewrap, containers), task repositories, verification."""
