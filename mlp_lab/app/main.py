"""The script `streamlit run` executes (see `mlp-lab app`): the pages live in `mlp_lab.app.views`."""

from mlp_lab.app.views import main

main()
